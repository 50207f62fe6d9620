//! Experiments of notebook 04, "Async and await". Each part of the notebook has its own
//! module with its own `experiments()` list; this one only gathers them.

pub mod control_flow;
pub mod executors;
pub mod exercises;
pub mod laziness;
pub mod poll_trace;
pub mod sizes;
pub mod waiting;

pub use exercises::{FETCH_MS, Fetcher, check_concurrent_fetches, check_third_poll};

/// This notebook's experiments, for the CLI's registry, in notebook order.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    let mut all = Vec::new();
    all.extend(waiting::experiments());
    all.extend(poll_trace::experiments());
    all.extend(sizes::experiments());
    all.extend(control_flow::experiments());
    all.extend(executors::experiments());
    all.extend(laziness::experiments());
    all
}
