//! Experiments of notebook 02, "Rust concurrency features".

pub mod actor;
pub mod histogram;
pub mod interior;
pub mod race;
pub mod send_sync;

pub use actor::{ActorReport, ActorVsMutex, actor_vs_mutex};
pub use histogram::{Histogram, HistogramReport, HistogramWay, histogram};
pub use interior::{InteriorCosts, InteriorReport, interior_costs, refcell_conflict};
pub use race::{RaceReport, RacyCounter, racy_counter};
pub use send_sync::SendSyncTable;

use crate::lab::Experiment;

crate::impl_params!(ActorVsMutex, Histogram, InteriorCosts);

/// This notebook's experiments, for the CLI's registry. (The racy counter is left out:
/// it is `unsafe` to call, and a notebook cell is where that is shown and explained.)
pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment::new(
            "histogram",
            "02-features",
            "one histogram counted five ways (mutex, rwlock, atomic, shards, channel), throughput vs threads",
            histogram,
        ),
        Experiment::new(
            "actor",
            "02-features",
            "a counter service as an actor (owner thread + channels) vs a Mutex, requests/s vs clients",
            actor_vs_mutex,
        ),
        Experiment::new(
            "interior-costs",
            "02-features",
            "ns per increment through Cell, RefCell, atomics, Mutex, parking_lot, RwLock on one thread",
            interior_costs,
        ),
    ]
}
