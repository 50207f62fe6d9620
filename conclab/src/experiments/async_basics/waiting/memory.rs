//! How much memory units cost while they wait: this process's resident set (`VmRSS`)
//! and page tables (`VmPTE`) from `/proc/self/status`, and the kernel stacks of all
//! threads on the machine (`KernelStack` in `/proc/meminfo`), read before the units
//! start and again once all of them are waiting.

use serde::Serialize;

/// One reading, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Snapshot {
    rss: f64,
    pte: f64,
    kernel_stack: f64,
}

/// What `n` waiting units added, per unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UnitMemory {
    /// Growth of this process's resident memory (`VmRSS`) per unit, in KiB: thread stacks
    /// actually touched, task allocations, buffers.
    pub rss_kib: f64,
    /// Kernel memory per unit that RSS does not show, in KiB: growth of this process's page
    /// tables (`VmPTE`) plus growth of the machine-wide `KernelStack` (every thread has a
    /// kernel stack; other processes starting threads meanwhile add noise here).
    pub kernel_kib: f64,
    /// The whole RSS growth, in MiB.
    pub rss_total_mib: f64,
}

fn field_kib(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Reads the counters now (zeros where `/proc` is missing).
pub(crate) fn snapshot() -> Snapshot {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Snapshot {
        rss: field_kib(&status, "VmRSS").unwrap_or(0.0),
        pte: field_kib(&status, "VmPTE").unwrap_or(0.0),
        kernel_stack: field_kib(&meminfo, "KernelStack").unwrap_or(0.0),
    }
}

/// A reading to measure growth from: first hands memory that earlier runs freed back to
/// the OS (glibc's `malloc_trim`), so that units reusing it do not look free.
pub(crate) fn baseline() -> Snapshot {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it takes the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
    snapshot()
}

impl Snapshot {
    /// Growth from `base` to `self`, spread over `n` units.
    pub(crate) fn per_unit_since(&self, base: &Snapshot, n: usize) -> UnitMemory {
        let n = n.max(1) as f64;
        let rss = self.rss - base.rss;
        let kernel = (self.pte - base.pte) + (self.kernel_stack - base.kernel_stack);
        UnitMemory { rss_kib: rss / n, kernel_kib: kernel / n, rss_total_mib: rss / 1024.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_kib() {
        let text = "Name:\tx\nVmRSS:\t   12345 kB\nVmPTE:\t 88 kB\n";
        assert_eq!(field_kib(text, "VmRSS"), Some(12345.0));
        assert_eq!(field_kib(text, "VmPTE"), Some(88.0));
        assert_eq!(field_kib(text, "VmHWM"), None);
        let s = snapshot();
        assert!(s.rss > 0.0, "{s:?}");
        let later = Snapshot { rss: s.rss + 2048.0, ..s };
        let m = later.per_unit_since(&s, 4);
        assert_eq!((m.rss_kib, m.kernel_kib, m.rss_total_mib), (512.0, 0.0, 2.0));
    }
}
