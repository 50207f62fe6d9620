//! Experiments, one module per notebook (each behind the cargo feature of that name).
//! Each is a function from a typed parameter struct (with `Default`, validated before
//! anything starts) to a [`crate::lab::Report`]. [`experiments`] lists them all for the
//! CLI; the generic machinery ([`crate::lab::Experiment`]) lives in the lab layer, so
//! imports run one way: `bin` → `experiments` → `lab` / `primitives`.

#[cfg(feature = "advanced")]
pub mod advanced;
#[cfg(feature = "async_basics")]
pub mod async_basics;
#[cfg(feature = "case_study")]
pub mod case_study;
#[cfg(feature = "features")]
pub mod features;
#[cfg(feature = "index")]
pub mod index;
#[cfg(feature = "intro")]
pub mod intro;
#[cfg(feature = "threads")]
pub mod threads;
#[cfg(feature = "tokio_rt")]
pub mod tokio_rt;

use crate::lab::Experiment;

/// Every experiment compiled in (one cargo feature per notebook), in notebook order.
#[allow(unused_mut)]
pub fn experiments() -> Vec<Experiment> {
    let mut all = Vec::new();
    #[cfg(feature = "index")]
    all.extend(index::experiments());
    #[cfg(feature = "intro")]
    all.extend(intro::experiments());
    #[cfg(feature = "features")]
    all.extend(features::experiments());
    #[cfg(feature = "threads")]
    all.extend(threads::experiments());
    #[cfg(feature = "async_basics")]
    all.extend(async_basics::experiments());
    #[cfg(feature = "tokio_rt")]
    all.extend(tokio_rt::experiments());
    #[cfg(feature = "advanced")]
    all.extend(advanced::experiments());
    #[cfg(feature = "case_study")]
    all.extend(case_study::experiments());
    all
}

/// The experiment called `name`.
pub fn find(name: &str) -> Option<Experiment> {
    experiments().into_iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let all = experiments();
        for e in &all {
            assert_eq!(all.iter().filter(|o| o.name == e.name).count(), 1);
            assert!(find(e.name).is_some());
            assert!(e.defaults().is_object());
        }
    }

    #[test]
    fn every_parameter_of_every_experiment_says_what_it_allows() {
        for e in experiments() {
            for k in e.param_names() {
                assert!(e.allowed(&k).is_some(), "{}: parameter {k} has no discoverable range", e.name);
            }
        }
    }
}
