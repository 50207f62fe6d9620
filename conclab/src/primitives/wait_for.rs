//! The wait-for graph: which thread holds which lock and which lock each blocked thread
//! waits for. A cycle in it is a deadlock; finding one is how a detector names it.

use serde::Serialize;
use std::collections::BTreeMap;

/// One step of a deadlock cycle: `thread` holds `holds` and waits for `waits_for`,
/// which `held_by` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitEdge {
    pub thread: String,
    pub holds: String,
    pub waits_for: String,
    pub held_by: String,
}

/// Who holds and who waits, by name, for threads and locks.
///
/// Threads register what they hold after taking a lock and what they wait for before
/// blocking; a monitor calls [`WaitForGraph::find_cycle`]. Each thread waits for at most
/// one lock at a time, so every thread has at most one outgoing edge, and a cycle is
/// found by following edges from each waiting thread.
///
/// ```
/// use conclab::primitives::WaitForGraph;
/// let mut g = WaitForGraph::default();
/// g.acquired("A", "L1");
/// g.acquired("B", "L2");
/// g.waiting("A", "L2");
/// assert!(g.find_cycle().is_none());
/// g.waiting("B", "L1");
/// let cycle = g.find_cycle().unwrap();
/// assert_eq!(WaitForGraph::describe(&cycle),
///     "A holds L1 and waits for L2 (held by B); B holds L2 and waits for L1 (held by A)");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitForGraph {
    holder: BTreeMap<String, String>,
    waits: BTreeMap<String, String>,
}

impl WaitForGraph {
    /// `thread` now holds `lock` (and no longer waits for it).
    pub fn acquired(&mut self, thread: &str, lock: &str) {
        if self.waits.get(thread).is_some_and(|l| l == lock) {
            self.waits.remove(thread);
        }
        self.holder.insert(lock.to_string(), thread.to_string());
    }

    /// `thread` released `lock`.
    pub fn released(&mut self, thread: &str, lock: &str) {
        if self.holder.get(lock).is_some_and(|t| t == thread) {
            self.holder.remove(lock);
        }
    }

    /// `thread` is about to block on `lock`.
    pub fn waiting(&mut self, thread: &str, lock: &str) {
        self.waits.insert(thread.to_string(), lock.to_string());
    }

    /// `thread` stopped waiting (it gave up, or was told to).
    pub fn stopped_waiting(&mut self, thread: &str) {
        self.waits.remove(thread);
    }

    /// The thread holding `lock`, if any.
    pub fn holder(&self, lock: &str) -> Option<&str> {
        self.holder.get(lock).map(String::as_str)
    }

    /// A cycle of threads each waiting for a lock the next one holds, starting at the
    /// alphabetically first thread on it; `None` if no thread waits in a cycle.
    pub fn find_cycle(&self) -> Option<Vec<WaitEdge>> {
        for start in self.waits.keys() {
            let mut path: Vec<&str> = vec![start];
            let mut t: &str = start;
            while let Some(next) = self.waits.get(t).and_then(|l| self.holder.get(l)) {
                if let Some(i) = path.iter().position(|p| p == next) {
                    let cycle = &path[i..];
                    let first = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
                    let ordered: Vec<&str> = cycle[first..].iter().chain(&cycle[..first]).copied().collect();
                    return Some(self.edges(&ordered));
                }
                path.push(next);
                t = next;
            }
        }
        None
    }

    fn edges(&self, threads: &[&str]) -> Vec<WaitEdge> {
        let n = threads.len();
        (0..n)
            .map(|k| {
                let (t, prev) = (threads[k], threads[(k + n - 1) % n]);
                // The lock `t` holds that matters is the one its predecessor waits for.
                let holds = self.waits.get(prev).cloned().unwrap_or_default();
                let waits_for = self.waits.get(t).cloned().unwrap_or_default();
                WaitEdge {
                    thread: t.to_string(),
                    holds,
                    held_by: self.holder.get(&waits_for).cloned().unwrap_or_default(),
                    waits_for,
                }
            })
            .collect()
    }

    /// The cycle in words: "A holds L1 and waits for L2 (held by B); B holds …".
    pub fn describe(cycle: &[WaitEdge]) -> String {
        cycle
            .iter()
            .map(|e| format!("{} holds {} and waits for {} (held by {})", e.thread, e.holds, e.waits_for, e.held_by))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_not_a_cycle() {
        let mut g = WaitForGraph::default();
        g.acquired("A", "L1");
        g.acquired("B", "L2");
        g.waiting("A", "L2");
        g.waiting("C", "L1");
        assert!(g.find_cycle().is_none());
        assert_eq!(g.holder("L2"), Some("B"));
    }

    #[test]
    fn finds_a_three_thread_cycle_behind_a_waiting_bystander() {
        let mut g = WaitForGraph::default();
        for (t, l) in [("P1", "F1"), ("P2", "F2"), ("P3", "F3")] {
            g.acquired(t, l);
        }
        g.waiting("P0", "F1"); // waits into the cycle, is not part of it
        g.waiting("P1", "F2");
        g.waiting("P2", "F3");
        g.waiting("P3", "F1");
        let c = g.find_cycle().unwrap();
        let names: Vec<&str> = c.iter().map(|e| e.thread.as_str()).collect();
        assert_eq!(names, ["P1", "P2", "P3"]);
        assert_eq!(c[0].holds, "F1");
        assert_eq!(c[0].waits_for, "F2");
        assert_eq!(c[2].held_by, "P1");
    }

    #[test]
    fn releasing_breaks_the_cycle() {
        let mut g = WaitForGraph::default();
        g.acquired("A", "L1");
        g.acquired("B", "L2");
        g.waiting("A", "L2");
        g.waiting("B", "L1");
        assert!(g.find_cycle().is_some());
        g.stopped_waiting("B");
        g.released("B", "L2");
        assert!(g.find_cycle().is_none());
        g.acquired("A", "L2");
        assert_eq!(g.holder("L2"), Some("A"));
        assert!(g.waits.is_empty());
    }
}
