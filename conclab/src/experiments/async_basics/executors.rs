//! (placeholder: being written)

/// This part's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    Vec::new()
}
