//! Small views of the operating system that experiments report: thread ids, the CPU a
//! thread runs on, its CPU time, and context-switch counters.

use serde::Serialize;

/// The kernel's id of the calling thread (Linux `gettid`).
pub fn tid() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as i64 }
}

/// The process id.
pub fn pid() -> i64 {
    std::process::id() as i64
}

/// The logical CPU the calling thread is running on right now (`sched_getcpu`; -1 if
/// unknown). It can change at any moment unless the thread is pinned.
pub fn current_cpu() -> i64 {
    // SAFETY: sched_getcpu has no preconditions.
    unsafe { libc::sched_getcpu() as i64 }
}

/// CPU time the calling thread has used so far, in seconds (`CLOCK_THREAD_CPUTIME_ID`;
/// 0 if unknown). Next to wall time it tells whether a thread ran or waited for a CPU.
pub fn thread_cpu_seconds() -> f64 {
    // SAFETY: an all-zero timespec is a valid value; clock_gettime only writes into it.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: t is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Whether the kernel groups tasks by session before it shares the CPUs ("autogroup",
/// `/proc/sys/kernel/sched_autogroup_enabled`); `None` where that cannot be read. With it
/// on, a busy machine's CPU time is shared between sessions first and only then between
/// a session's threads, so a process does not get more of it by running more threads.
pub fn autogroup_enabled() -> Option<bool> {
    let s = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled").ok()?;
    Some(s.trim() != "0")
}

/// Context switches of one thread (or a process): voluntary ones happen when it blocks
/// (waits on a futex, sleeps, does I/O); involuntary ones when the scheduler preempts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Switches {
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Switches {
    /// Counters of the calling thread (`getrusage(RUSAGE_THREAD)`).
    pub fn this_thread() -> Switches {
        // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: ru is a valid, writable rusage.
        let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } == 0;
        if !ok {
            return Switches::default();
        }
        Switches { voluntary: ru.ru_nvcsw as u64, involuntary: ru.ru_nivcsw as u64 }
    }

    /// Change since `earlier`.
    pub fn since(&self, earlier: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            involuntary: self.involuntary.saturating_sub(earlier.involuntary),
        }
    }
}

impl std::ops::Add for Switches {
    type Output = Switches;
    fn add(self, o: Switches) -> Switches {
        Switches { voluntary: self.voluntary + o.voluntary, involuntary: self.involuntary + o.involuntary }
    }
}

/// Gives the calling thread a descriptor table of its own holding only 0, 1 and 2: one
/// call of `close_range(3, ~0, CLOSE_RANGE_UNSHARE)` (Linux 5.9+), or where that is
/// missing `unshare(CLONE_FILES)` and then a `close` of every other number. Threads the
/// caller starts afterwards share its new table; the rest of the process keeps the old
/// one. `RLIMIT_NOFILE` caps the numbers in each table, so a load generator whose
/// runtime runs on such a thread has the whole limit for its own sockets, as it would in
/// a process of its own — while a descriptor opened elsewhere means nothing (or another
/// file) on it: such a thread must only touch what it opened itself. The table is freed,
/// closing whatever is still open in it, when the last thread using it exits.
///
/// Never combine it with tokio's `signal` or `process` features (this crate enables
/// neither): tokio's signal driver registers a descriptor it opened once for the whole
/// process, which on a thread with a table of its own is closed or another file.
pub fn own_fd_table() -> Result<(), String> {
    // SAFETY: close_range only closes descriptors of the calling thread's table, which
    // CLOSE_RANGE_UNSHARE has first made private to it; nothing else uses those numbers.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_UNSHARE) };
    if r == 0 {
        return Ok(());
    }
    let first = std::io::Error::last_os_error();
    // SAFETY: unshare(CLONE_FILES) gives the calling thread a copy of its table and
    // changes nothing else.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("this kernel refused a descriptor table of our own (close_range: {first}; unshare: {e})"));
    }
    // The numbers open in the copy, listed first (the listing's own descriptor is among
    // them, closed with the rest once the listing is done); every number up to the limit
    // where /proc cannot be read.
    let listed: Option<Vec<i32>> = std::fs::read_dir("/proc/thread-self/fd")
        .ok()
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect());
    let numbers: Vec<i32> = match listed {
        Some(v) => v.into_iter().filter(|&fd| fd > 2).collect(),
        None => (3..crate::lab::limits::Limits::raise_nofile().min(1 << 20) as i32).collect(),
    };
    for fd in numbers {
        // SAFETY: the table is ours alone now; closing a copy leaves the process's table as it is.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Whether [`own_fd_table`] works here (tried once, on a thread that exits at once).
pub fn own_fd_tables_work() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| std::thread::spawn(|| own_fd_table().is_ok()).join().unwrap_or(false))
}

/// A field of `/proc/self/status` (e.g. `Threads`, `VmRSS`), as text.
pub fn proc_status(field: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_counters_are_plausible() {
        assert_eq!(pid(), std::process::id() as i64);
        let other = std::thread::spawn(tid).join().unwrap();
        assert_ne!(other, tid());
        assert!(current_cpu() >= 0);
        let before = Switches::this_thread();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let d = Switches::this_thread().since(before);
        assert!(d.voluntary >= 1, "sleeping blocks the thread: {d:?}");
        assert!(proc_status("Threads").is_some());
    }

    #[test]
    fn a_thread_with_its_own_table_neither_sees_nor_keeps_the_process_descriptors() {
        use std::os::fd::AsRawFd;
        if !own_fd_tables_work() {
            return;
        }
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let fd = f.as_raw_fd();
        // SAFETY: F_GETFD only asks whether the number is open.
        let open_here = |fd: i32| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        let (seen, opened) = std::thread::spawn(move || {
            own_fd_table().unwrap();
            let seen = open_here(fd);
            let files: Vec<_> = (0..64).map(|_| std::fs::File::open("/proc/self/status").unwrap()).collect();
            (seen, files.iter().filter(|f| f.as_raw_fd() >= 3).count())
        })
        .join()
        .unwrap();
        assert!(!seen, "descriptor {fd} of the process was open in the private table");
        assert_eq!(opened, 64);
        assert!(open_here(fd), "the process's own table lost descriptor {fd}");
    }
}
