//! Experiments, one module per notebook (each behind the cargo feature of that name).
//! Each is a function from a typed parameter struct (with `Default`, validated before
//! anything starts) to a [`crate::lab::Report`].

#[cfg(feature = "features")]
pub mod features;
#[cfg(feature = "index")]
pub mod index;
#[cfg(feature = "intro")]
pub mod intro;
pub mod registry;
#[cfg(feature = "threads")]
pub mod threads;
