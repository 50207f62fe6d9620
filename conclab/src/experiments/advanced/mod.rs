//! Experiments of notebook 06, "Advanced concurrency": streams, backpressure, CPU work
//! inside async code, coordination, and production patterns (hand-built, then with
//! tower). Each part has its own module with its own `experiments()` list; this one only
//! gathers them.

/// The notebook name the experiments of this module belong to.
pub const NOTEBOOK: &str = "06-advanced";

pub mod backpressure;
pub mod coordination;
pub mod exercises;
pub mod patterns;
pub mod starvation;
pub mod streams;
pub mod tower_side;

/// This notebook's experiments, for the CLI's registry, in notebook order.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    #[allow(unused_mut)]
    let mut all = Vec::new();
    all.extend(streams::experiments());
    all.extend(backpressure::experiments());
    all.extend(starvation::experiments());
    all.extend(coordination::experiments());
    all.extend(patterns::experiments());
    all.extend(tower_side::experiments());
    all
}
