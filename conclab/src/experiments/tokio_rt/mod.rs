//! Experiments of notebook 05, "Tokio". Each part of the notebook has its own module with
//! its own `experiments()` list; this one only gathers them.

pub mod coop;
pub mod stealing;
pub mod timers;

/// The notebook name the experiments of this module belong to.
pub const NOTEBOOK: &str = "05-tokio";

/// This notebook's experiments, for the CLI's registry, in notebook order.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    let mut all = Vec::new();
    all.extend(timers::experiments());
    all.extend(stealing::experiments());
    all.extend(coop::experiments());
    all
}
