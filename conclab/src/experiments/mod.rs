//! Experiments, one module per notebook. Each is a function from a typed parameter
//! struct (with `Default`, validated before anything starts) to a [`crate::lab::Report`].

pub mod features;
pub mod index;
pub mod intro;
pub mod registry;
pub mod threads;
