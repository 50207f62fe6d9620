//! The machine card: what the numbers in a figure were measured on.

use crate::lab::table::Table;
use serde::Serialize;
use std::sync::OnceLock;

/// Hardware and software facts that change what the experiments measure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineCard {
    /// CPU model from `/proc/cpuinfo` ("unknown" elsewhere).
    pub cpu_model: String,
    /// Logical CPUs the kernel reports online.
    pub logical_cpus: usize,
    /// What `std::thread::available_parallelism` says: CPUs this process may use
    /// (affinity masks and cgroup quotas lower it).
    pub available_parallelism: usize,
    /// Operating system name (`/etc/os-release`), e.g. "Debian GNU/Linux 12 (bookworm)".
    pub os: String,
    /// Kernel release, e.g. "6.1.0-18-amd64".
    pub kernel: String,
    /// Physical cores (distinct core ids in `/proc/cpuinfo`); fewer than the logical
    /// CPUs when each core runs two hardware threads (SMT, "hyper-threading").
    pub physical_cores: usize,
    /// CPU limit of this process's cgroup (`/sys/fs/cgroup/cpu.max`), in CPUs; `None` when
    /// unlimited or unknown. Containers started with `--cpus` have one.
    pub cgroup_cpu_limit: Option<f64>,
    /// Whether the kernel reports a hypervisor (virtual machines switch contexts slower).
    pub virtualized: bool,
    /// The rustc that compiled this code.
    pub rustc: String,
    /// The evcxr kernel's version when the code runs inside one, else `None`.
    pub evcxr: Option<String>,
    /// Whether debug assertions were on when this crate was compiled (evcxr turns them
    /// on for notebook cells; the lab's evcxr/init.evcxr turns them off again).
    pub debug_assertions: bool,
    /// Whether integer overflow checks were on when this crate was compiled.
    pub overflow_checks: bool,
    /// The optimisation level this crate was compiled at ("3" in release builds).
    pub opt_level: String,
}

impl MachineCard {
    /// Reads the card of the machine this runs on (cached after the first call).
    pub fn current() -> MachineCard {
        static CARD: OnceLock<MachineCard> = OnceLock::new();
        CARD.get_or_init(read_card).clone()
    }

    /// One-line description for figure captions: "2 CPUs · Intel Xeon … · Linux 6.1".
    pub fn caption(&self) -> String {
        format!(
            "{} CPUs ({} cores) · {} · {}{} · {}",
            self.available_parallelism,
            self.physical_cores,
            self.cpu_model,
            self.os,
            if self.virtualized { " · VM" } else { "" },
            self.build()
        )
    }

    /// How the code was built, in a few words: "release build", or for notebook cells
    /// the profile evcxr compiled them at and what still differs from a release build.
    pub fn build(&self) -> String {
        if self.evcxr.is_none() && !self.debug_assertions && !self.overflow_checks {
            return format!("release build (opt-level {})", self.opt_level);
        }
        let checks = match (self.debug_assertions, self.overflow_checks) {
            (false, false) => "no debug assertions or overflow checks".to_string(),
            (true, true) => "debug assertions and overflow checks on".to_string(),
            (true, false) => "debug assertions on".to_string(),
            (false, true) => "overflow checks on".to_string(),
        };
        let what = if self.evcxr.is_some() { "notebook build" } else { "debug build" };
        let rest = if self.evcxr.is_some() { "; incremental, std linked dynamically" } else { "" };
        format!("{what} (opt-level {}, {checks}{rest})", self.opt_level)
    }

    /// The card as a two-column table.
    pub fn table(&self) -> Table {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let mut t = Table::new("Machine card", &["property", "value"]);
        t.row(vec!["CPU model".into(), self.cpu_model.clone()]);
        t.row(vec!["logical CPUs (online)".into(), self.logical_cpus.to_string()]);
        t.row(vec!["available_parallelism()".into(), self.available_parallelism.to_string()]);
        t.row(vec!["physical cores".into(), self.physical_cores.to_string()]);
        t.row(vec!["cgroup CPU limit".into(), self.cgroup_cpu_limit.map_or("none".into(), |c| format!("{c:.2} CPUs"))]);
        t.row(vec!["virtual machine".into(), yes_no(self.virtualized)]);
        t.row(vec!["OS".into(), self.os.clone()]);
        t.row(vec!["kernel".into(), self.kernel.clone()]);
        t.row(vec!["rustc".into(), self.rustc.clone()]);
        t.row(vec!["evcxr".into(), self.evcxr.clone().unwrap_or_else(|| "not running under evcxr".into())]);
        t.row(vec!["debug assertions".into(), if self.debug_assertions { "on" } else { "off" }.into()]);
        t.row(vec!["overflow checks".into(), if self.overflow_checks { "on" } else { "off" }.into()]);
        t.row(vec!["built as".into(), self.build()]);
        t
    }

    /// Renders the card as a table in a notebook.
    pub fn evcxr_display(&self) {
        self.table().evcxr_display();
    }
}

fn read_card() -> MachineCard {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into());
    let virtualized =
        cpuinfo.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    // SAFETY: sysconf only reads a kernel-provided value.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mut cores: Vec<(String, String)> = Vec::new();
    let (mut phys, mut core) = (String::new(), String::new());
    for l in cpuinfo.lines() {
        if let Some(v) = l.strip_prefix("physical id") {
            phys = v.trim_start_matches([' ', '\t', ':']).to_string();
        } else if let Some(v) = l.strip_prefix("core id") {
            core = v.trim_start_matches([' ', '\t', ':']).to_string();
        } else if l.trim().is_empty() && !core.is_empty() {
            if !cores.contains(&(phys.clone(), core.clone())) {
                cores.push((phys.clone(), core.clone()));
            }
            core.clear();
        }
    }
    let logical = if online > 0 { online as usize } else { 1 };
    let physical_cores = if cores.is_empty() { logical } else { cores.len() };
    let cgroup_cpu_limit = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok().and_then(|s| {
        let mut it = s.split_whitespace();
        let (quota, period) = (it.next()?.parse::<f64>().ok()?, it.next()?.parse::<f64>().ok()?);
        (period > 0.0).then(|| quota / period)
    });
    MachineCard {
        physical_cores,
        cgroup_cpu_limit,
        cpu_model,
        logical_cpus: logical,
        available_parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os,
        kernel,
        virtualized,
        rustc: env!("CONCLAB_RUSTC_VERSION").to_string(),
        evcxr: evcxr_version(),
        debug_assertions: cfg!(debug_assertions),
        overflow_checks: env!("CONCLAB_OVERFLOW_CHECKS") == "true",
        opt_level: env!("CONCLAB_OPT_LEVEL").to_string(),
    }
}

/// evcxr runs cells in a child process marked by `EVCXR_IS_RUNTIME`; the lab's kernel
/// spec (written by the setup script) records the kernel's version in
/// `CONCLAB_EVCXR_VERSION`. (Running the evcxr binary to ask would start another runtime.)
fn evcxr_version() -> Option<String> {
    std::env::var_os("EVCXR_IS_RUNTIME")?;
    Some(std::env::var("CONCLAB_EVCXR_VERSION").unwrap_or_else(|_| "unknown version".into()))
}

/// Logical CPU ids this process may be pinned to (its affinity mask), ascending.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it for this thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    let mut ids: Vec<usize> = if ok {
        // SAFETY: CPU_ISSET reads a bit of the set; every index is below CPU_SETSIZE.
        (0..libc::CPU_SETSIZE as usize).filter(|&i| unsafe { libc::CPU_ISSET(i, &set) }).collect()
    } else {
        Vec::new()
    };
    if ids.is_empty() {
        ids.push(0);
    }
    ids
}

/// Logical CPUs sharing a physical core with `cpu` (its SMT siblings, itself included),
/// from `/sys/devices/system/cpu/cpuN/topology/thread_siblings_list`; just `cpu` when unknown.
pub fn smt_siblings(cpu: usize) -> Vec<usize> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let mut ends = part.split('-').filter_map(|x| x.trim().parse::<usize>().ok());
        match (ends.next(), ends.next()) {
            (Some(a), Some(b)) => out.extend(a..=b),
            (Some(a), None) => out.push(a),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(cpu);
    }
    out
}

/// Pins the calling thread to logical CPU `cpu`; `false` if the OS refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET sets one in-range bit, and
    // sched_setaffinity(0, ..) applies the set to the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Threads of this process right now (`Threads:` in `/proc/self/status`; 0 where there
/// is no `/proc`).
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

/// The thread count once it has come down to `target` or `timeout` has passed. A joined
/// thread has finished its work, but the kernel removes it from the process a moment
/// later: a count read right after `join` can still include it.
pub fn thread_count_settled(target: usize, timeout: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let n = thread_count();
        if n <= target || std::time::Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// 1 … 2 × cores: every count up to 8, then powers of two and the core count.
pub fn default_threads(cores: usize) -> Vec<usize> {
    let top = 2 * cores;
    let mut v: Vec<usize> = (1..=top.min(8)).collect();
    let mut p = 16;
    while p <= top {
        v.push(p);
        p *= 2;
    }
    for extra in [cores, cores + cores / 2, top] {
        if extra > 8 && !v.contains(&extra) {
            v.push(extra);
        }
    }
    v.sort_unstable();
    v
}

/// [`default_threads`] limited to counts `<= max` and at most `len` of them, so a
/// default stays inside an experiment's allowed range on any machine.
pub fn default_threads_within(cores: usize, max: usize, len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = default_threads(cores).into_iter().filter(|&t| t <= max).collect();
    while v.len() > len {
        // drop from the middle of the large counts, keeping 1, the core count and the top
        let k = v.iter().position(|&t| t > 8 && t != cores).unwrap_or(v.len() - 2);
        v.remove(k);
    }
    v
}

/// Number of CPUs experiments should treat as "the cores of this machine".
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_has_sane_counts() {
        let c = MachineCard::current();
        assert!(c.logical_cpus >= 1);
        assert!(c.available_parallelism >= 1 && c.available_parallelism <= c.logical_cpus.max(c.available_parallelism));
        assert!(c.rustc.starts_with("rustc "), "{}", c.rustc);
        assert_eq!(c.debug_assertions, cfg!(debug_assertions));
        assert!(c.evcxr.is_none(), "unit tests do not run under evcxr");
        // Unit tests build at the dev (or test) profile: checks on, not a release build.
        assert_eq!(c.overflow_checks, cfg!(debug_assertions));
        assert!(
            c.build().starts_with(if cfg!(debug_assertions) { "debug build" } else { "release build" }),
            "{}",
            c.build()
        );
    }

    #[test]
    fn table_lists_every_field() {
        let t = MachineCard::current().table();
        assert_eq!(t.rows.len(), 13);
        assert!(t.to_text().contains("available_parallelism()"));
    }

    #[test]
    fn usable_cpus_cover_available_parallelism() {
        // a cgroup quota can lower available_parallelism below the affinity mask, never raise it
        assert!(usable_cpus().len() >= cores());
    }
}
