//! Experiments of notebook 01, "Intro to concurrency".

pub mod exercises;
pub mod overlap;
pub mod ping_pong;
pub mod processes;
pub mod scaling;
pub mod stacks;
pub mod timeline;

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

/// Adds the machine's load to a figure's caption when the run was disturbed.
pub(crate) fn mark_busy(f: crate::lab::Figure, load: &crate::lab::Load) -> crate::lab::Figure {
    match load.others_share {
        Some(s) if load.busy() => {
            let caption =
                format!("{} · machine busy: other processes took {:.0} % of the CPU time", f.caption, s * 100.0);
            f.caption(caption)
        }
        _ => f,
    }
}
