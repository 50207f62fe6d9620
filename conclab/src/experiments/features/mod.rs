//! Experiments of notebook 02-features.

use crate::experiments::registry::Experiment;

/// This notebook's experiments, for the CLI's registry.
pub fn experiments() -> Vec<Experiment> {
    vec![]
}
