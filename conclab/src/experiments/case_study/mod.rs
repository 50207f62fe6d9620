//! Experiments of notebook 07, "Case study": one tiny protocol served two ways — a
//! thread per connection ([`server::ServerKind::Threads`]) and tokio tasks
//! ([`server::ServerKind::Tokio`]) — driven by a tokio load generator ([`load`]) that
//! records latency in an HDR histogram, and the `server-scaling` experiment
//! ([`scaling`]) that holds 10 … thousands of connections against each.
//!
//! The protocol is a line echo: the client sends one line (`req 17\n`), the server sends
//! the same line back. Framing is a newline, so parsing is one `read_until` and the
//! lesson stays on concurrency — how many connections a server holds, what each costs
//! in memory and threads, and how latency grows — rather than on HTTP parsing. A line
//! longer than [`server::MAX_LINE`] bytes is bad input: the server answers
//! `ERR line longer than … bytes` and closes the connection.
//!
//! Everything runs on 127.0.0.1 with ephemeral ports; every server an experiment starts
//! is shut down (stop accepting, drain with a deadline, then abort) and its threads
//! joined before the call returns.

/// The notebook name the experiments of this module belong to.
pub const NOTEBOOK: &str = "07-case-study";

pub mod exercises;
pub mod load;
pub mod overload;
pub mod pool;
pub mod scaling;
pub mod server;

/// This notebook's experiments, for the CLI's registry, in notebook order.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    #[allow(unused_mut)]
    let mut all = Vec::new();
    all.extend(scaling::experiments());
    all.extend(overload::experiments());
    all.extend(pool::experiments());
    all
}
