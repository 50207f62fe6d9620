//! Self-check exercises of notebook 05.
