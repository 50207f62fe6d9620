//! Experiments of notebook 01, "Intro to concurrency".

pub mod exercises;
pub mod overlap;
pub mod ping_pong;
pub mod processes;
pub mod scaling;
pub mod stacks;
pub mod timeline;

pub(crate) use crate::lab::noise::mark_busy;

pub use exercises::{Turn, check_handoff, check_spread};
pub use overlap::{Overlap, OverlapReport, overlap};
pub use ping_pong::{Mechanism, PingPong, PingPongReport, ping_pong};
pub use processes::{Processes, ProcessesReport, processes};
pub use scaling::{Scaling, ScalingReport, scaling};
pub use stacks::{Stacks, StacksReport, stacks};
pub use timeline::{Timeline, TimelineReport, timeline};

crate::impl_params!(Overlap, PingPong, Processes, Scaling, Stacks, Timeline);

/// This notebook's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    use crate::lab::Experiment;
    vec![
        Experiment::new(
            "timeline",
            "01-intro",
            "N CPU-bound tasks on one CPU vs all CPUs, as a timeline of who ran where",
            timeline,
        ),
        Experiment::new(
            "processes",
            "01-intro",
            "a child process and threads: PIDs, TIDs, thread counts, shared vs private memory",
            processes,
        ),
        Experiment::new(
            "stacks",
            "01-intro",
            "addresses of stack locals per thread vs one heap allocation, default vs chosen stack size",
            stacks,
        ),
        Experiment::new(
            "ping-pong",
            "01-intro",
            "context-switch cost: round trips between two threads, same CPU / two CPUs / unpinned",
            ping_pong,
        ),
        Experiment::new(
            "scaling",
            "01-intro",
            "a fixed CPU-bound job over 1..2x cores threads and rayon; Amdahl and USL fits where the data allow",
            scaling,
        ),
        Experiment::new(
            "overlap",
            "01-intro",
            "tasks that compute then wait vs tasks that only compute, on 1..8 threads pinned to one CPU",
            overlap,
        ),
    ]
}
