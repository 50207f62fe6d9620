//! Was the machine quiet? A [`LoadProbe`] reads the kernel's CPU accounting
//! (`/proc/stat`) and this process's own CPU time (`/proc/self/stat`) at the start and
//! end of a run; the difference is CPU time other processes (and, in a VM, the
//! hypervisor: "steal") took while we measured. Findings and captions report it, so a
//! reader beside a busy browser knows why the numbers scatter.

use serde::Serialize;
use std::time::Instant;

/// A share of the machine's CPU capacity above which a run counts as disturbed.
pub const BUSY_SHARE: f64 = 0.10;
/// Runs shorter than this are too short for the kernel's 10 ms accounting ticks.
const MIN_SECONDS: f64 = 0.2;

#[derive(Debug, Clone, Copy, Default)]
struct Ticks {
    busy: u64,
    total: u64,
    steal: u64,
    ours: u64,
}

fn read() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let (idle, iowait, steal) = (get(3), get(4), get(7));
    let total: u64 = (0..8).map(get).sum();
    let ours = own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(Ticks { busy: total - idle - iowait, total, steal, ours })
}

/// utime + stime (clock ticks) from the text of `/proc/<pid>/stat`.
fn own_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces and parentheses) start at
    // state (field 3). Every field keeps its position: tpgid is -1 without a terminal,
    // so parse as signed. utime and stime are fields 14 and 15: index 10 and 11 here.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<i64> = after.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    Some((f.get(10)? + f.get(11)?).max(0) as u64)
}

/// Started before a measurement; [`LoadProbe::finish`] says how busy the machine was.
#[derive(Debug, Clone)]
pub struct LoadProbe {
    start: Option<Ticks>,
    at: Instant,
}

impl LoadProbe {
    /// Reads the counters now.
    pub fn start() -> LoadProbe {
        LoadProbe { start: read(), at: Instant::now() }
    }

    /// Reads them again and reports the load other processes put on the machine since
    /// [`LoadProbe::start`].
    pub fn finish(&self) -> Load {
        let seconds = self.at.elapsed().as_secs_f64();
        let (Some(a), Some(b)) = (self.start, read()) else {
            return Load { seconds, others_share: None, steal_share: None };
        };
        let total = b.total.saturating_sub(a.total);
        if seconds < MIN_SECONDS || total == 0 {
            return Load { seconds, others_share: None, steal_share: None };
        }
        let others = b.busy.saturating_sub(a.busy).saturating_sub(b.ours.saturating_sub(a.ours));
        Load {
            seconds,
            others_share: Some((others as f64 / total as f64).clamp(0.0, 1.0)),
            steal_share: Some(b.steal.saturating_sub(a.steal) as f64 / total as f64),
        }
    }
}

/// How busy the machine was during a run, as shares of its whole CPU capacity (all CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Load {
    /// Length of the run.
    pub seconds: f64,
    /// CPU time used by other processes / all CPU time that passed; `None` when the run
    /// was too short to tell or `/proc` is missing.
    pub others_share: Option<f64>,
    /// Time the hypervisor gave our virtual CPUs to other machines, the same way.
    pub steal_share: Option<f64>,
}

impl Load {
    /// Whether other processes took more than [`BUSY_SHARE`] of the machine.
    pub fn busy(&self) -> bool {
        self.others_share.is_some_and(|s| s > BUSY_SHARE)
    }

    /// One sentence for findings and captions.
    pub fn sentence(&self) -> String {
        match self.others_share {
            None => "Machine load not measured (the run was too short to tell).".into(),
            Some(s) if s > BUSY_SHARE => format!(
                "The machine was busy: other processes used {:.0} % of its CPU time during this run, \
                 so these numbers are slower and more scattered than on a quiet machine.",
                s * 100.0
            ),
            Some(s) => format!("The machine was quiet: other processes used {:.0} % of its CPU time.", s * 100.0),
        }
    }
}

/// Adds the machine's load to a figure's caption when the run was disturbed
/// (`… · machine busy: other processes took 48 % of the CPU time`).
pub fn mark_busy(f: crate::lab::Figure, load: &Load) -> crate::lab::Figure {
    match load.others_share {
        Some(s) if load.busy() => {
            let caption =
                format!("{} · machine busy: other processes took {:.0} % of the CPU time", f.caption, s * 100.0);
            f.caption(caption)
        }
        _ => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_time_is_read_from_the_right_fields() {
        // A process without a terminal: tty_nr 0, tpgid -1 (the field that once shifted
        // every later one when it was skipped as unparsable).
        let stat = "4242 (evcxr (cell)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 37 0 0 20 0 5 0";
        assert_eq!(own_ticks(stat), Some(287));
    }

    #[test]
    fn a_short_run_cannot_tell_and_a_longer_one_measures() {
        let p = LoadProbe::start();
        assert_eq!(p.finish().others_share, None);
        assert!(p.finish().sentence().contains("not measured"));
        let p = LoadProbe { start: read(), at: Instant::now() - std::time::Duration::from_secs(1) };
        std::thread::sleep(std::time::Duration::from_millis(30));
        let l = p.finish();
        assert!(l.others_share.is_some_and(|s| (0.0..=1.0).contains(&s)), "{l:?}");
    }

    #[test]
    fn a_hog_in_another_process_is_seen() {
        // A child process that burns one CPU for 400 ms: at least part of one CPU of
        // the machine must show up as "others" (the 10× margin: 1 CPU of N is ≥ 1/N,
        // we ask for a fifth of that).
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let p = LoadProbe::start();
        let child = std::process::Command::new("sh")
            .args(["-c", "end=$(($(date +%s%N)+400000000)); while [ $(date +%s%N) -lt $end ]; do :; done"])
            .spawn();
        let Ok(mut child) = child else { return };
        let _ = child.wait();
        let l = p.finish();
        let seen = l.others_share.unwrap_or(0.0);
        assert!(seen > 0.2 / cpus.max(1.0), "{l:?}");
    }
}
