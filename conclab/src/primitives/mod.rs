//! Hand-built concurrency primitives that the notebooks take apart, each next to the
//! production library it imitates. Lock-free ones are model-checked with loom:
//! `RUSTFLAGS="--cfg conclab_loom" cargo test -p conclab --release --lib primitives`.
