//! Experiments of notebook 02, "Rust concurrency features".

pub mod actor;
pub mod diagnostic;
pub mod exercises;
pub mod histogram;
pub mod interior;
pub mod race;
pub mod send_sync;

pub use actor::{ActorReport, ActorVsMutex, actor_vs_mutex};
pub use diagnostic::{Diagnostic, full_diagnostic};
pub use exercises::{check_counter, check_histogram, histogram_with_mutex};
pub use histogram::{Histogram, HistogramReport, HistogramWay, histogram};
pub use interior::{InteriorCosts, InteriorReport, interior_costs, refcell_conflict};
pub use race::{Build, RacePlacement, RaceReport, RacyCounter, racy_counter};
pub use send_sync::SendSyncTable;

use crate::lab::{Experiment, LabError};

crate::impl_params!(ActorVsMutex, Histogram, InteriorCosts, RacyCounter);

/// The machine card's caption, with how busy the machine was when it was busy (the last
/// finding says the same in words).
pub(crate) fn caption_with_load(f: crate::lab::Figure, load: &crate::lab::Load) -> crate::lab::Figure {
    if !load.busy() {
        return f;
    }
    let share = load.others_share.unwrap_or(0.0) * 100.0;
    f.caption(format!(
        "{} · busy: other processes used {share:.0} % of the CPU time during this run",
        crate::lab::MachineCard::current().caption()
    ))
}

/// [`crate::lab::findings::compare`], except that "about equal" is stated as a note: when
/// two medians are within 5 % of each other, overlapping spreads confirm it rather than
/// make it unclear.
pub(crate) fn compare_medians(
    a_name: &str,
    a: &crate::lab::Stats,
    b_name: &str,
    b: &crate::lab::Stats,
    unit: &str,
) -> crate::lab::Finding {
    let f = crate::lab::findings::compare(a_name, a, b_name, b, unit);
    if f.text.contains("about equal") { crate::lab::Finding::note(f.text) } else { f }
}

/// The racy counter as the CLI runs it: the CLI is the release build, and what that build
/// makes of the same racy loop is half of the lesson (notebook 02 shows the other half).
fn racy_counter_release(p: &RacyCounter) -> Result<RaceReport, LabError> {
    // SAFETY: none — the deliberate data race of `racy_counter`, run only to count the
    // updates it loses; nothing else runs in the CLI process meanwhile.
    unsafe { racy_counter(p) }
}

/// This notebook's experiments, for the CLI's registry. (The racy counter is `unsafe` to
/// call; the notebook cell is where that is shown and explained.)
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
        Experiment::new(
            "racy-counter",
            "02-features",
            "a deliberate data race (unsafe): updates lost by an unsynchronised counter, threads free or on one CPU",
            racy_counter_release,
        ),
    ]
}
