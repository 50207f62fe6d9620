//! `conclab`: the support crate of the Rust Concurrency Lab notebooks.
//!
//! Three layers:
//! - [`lab`]: measurement and presentation (timing, machine card, figures, tables);
//! - [`experiments`]: one module per notebook, each experiment a function from a typed,
//!   validated parameter struct to a [`lab::Report`];
//! - [`primitives`]: hand-built building blocks the lessons take apart (a spin lock, …),
//!   tested like library code, with loom models for the lock-free ones.
//!
//! Notebook cells `use conclab::prelude::*;` and call experiments; the `conclab` binary
//! runs the same experiments headless through [`experiments::experiments`].

pub mod experiments;
pub mod lab;
pub mod prelude;
pub mod primitives;
