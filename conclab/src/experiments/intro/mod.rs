//! Experiments of notebook 01, "Intro to concurrency".

pub mod ping_pong;
pub mod processes;
pub mod scaling;
pub mod stacks;
pub mod timeline;

pub use ping_pong::{PingPong, PingPongReport, ping_pong};
pub use processes::{Processes, ProcessesReport, processes};
pub use scaling::{Scaling, ScalingReport, scaling};
pub use stacks::{Stacks, StacksReport, stacks};
pub use timeline::{Timeline, TimelineReport, timeline};
