//! Experiments of notebook 05, "Tokio". Each part of the notebook has its own module with
//! its own `experiments()` list; this one only gathers them.

pub mod cancel;
pub mod coop;
pub mod exercises;
pub mod flavors;
pub mod lifecycle;
pub mod paused;
pub mod stealing;
pub mod timers;
pub mod tuning;

/// The notebook name the experiments of this module belong to.
pub const NOTEBOOK: &str = "05-tokio";

/// This notebook's experiments, for the CLI's registry, in notebook order.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    let mut all = Vec::new();
    all.extend(flavors::experiments());
    all.extend(stealing::experiments());
    all.extend(coop::experiments());
    all.extend(lifecycle::experiments());
    all.extend(cancel::experiments());
    all.extend(timers::experiments());
    all.extend(paused::experiments());
    all.extend(tuning::experiments());
    all
}
