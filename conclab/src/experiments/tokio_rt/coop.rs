//! placeholder
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![]
}
