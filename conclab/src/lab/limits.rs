//! What this machine lets one process start, read at run time: threads (the kernel's
//! `threads-max`, `RLIMIT_NPROC`, and memory mappings: each thread needs about four, and
//! a process past `vm.max_map_count` is aborted by the runtime, not given an error) and
//! file descriptors (`RLIMIT_NOFILE`). Experiments check their counts against these
//! before they start, so a documented maximum is refused with the reason instead of
//! failing half-way or aborting the kernel.

use crate::lab::error::ParamError;

/// Memory mappings one thread adds: its stack and guard page, and Rust's signal stack
/// and its guard page.
const MAPS_PER_THREAD: usize = 4;
/// Mappings and threads kept free for everything else the process does.
const MARGIN: usize = 1024;

/// The limits that bound how many threads and descriptors this process can add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `/proc/sys/kernel/threads-max`: threads on the whole machine.
    pub threads_max: Option<usize>,
    /// Soft `RLIMIT_NPROC`: threads and processes of this user.
    pub nproc: Option<usize>,
    /// `/proc/sys/vm/max_map_count`: memory mappings per process.
    pub max_map_count: Option<usize>,
    /// Mappings this process has now (`/proc/self/maps`).
    pub maps_now: usize,
    /// Threads of this process now.
    pub threads_now: usize,
    /// Soft and hard `RLIMIT_NOFILE`.
    pub nofile: (usize, usize),
}

fn read_usize(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Option<(usize, usize)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return None;
    }
    let v = |x: libc::rlim_t| if x == libc::RLIM_INFINITY { usize::MAX } else { x as usize };
    Some((v(r.rlim_cur), v(r.rlim_max)))
}

impl Limits {
    /// Reads the limits now.
    pub fn current() -> Limits {
        Limits {
            threads_max: read_usize("/proc/sys/kernel/threads-max"),
            nproc: rlimit(libc::RLIMIT_NPROC).map(|r| r.0),
            max_map_count: read_usize("/proc/sys/vm/max_map_count"),
            maps_now: std::fs::read_to_string("/proc/self/maps").map(|s| s.lines().count()).unwrap_or(0),
            threads_now: crate::lab::machine::thread_count(),
            nofile: rlimit(libc::RLIMIT_NOFILE).unwrap_or((1024, 1024)),
        }
    }

    /// How many more threads this process can start at once, with a margin, and which
    /// limit decides it.
    pub fn thread_headroom(&self) -> (usize, String) {
        let mut best = (usize::MAX, String::from("no limit found"));
        let mut consider = |n: usize, why: String| {
            if n < best.0 {
                best = (n, why);
            }
        };
        if let Some(m) = self.max_map_count {
            let free = m.saturating_sub(self.maps_now + MARGIN) / MAPS_PER_THREAD;
            consider(free, format!("vm.max_map_count = {m}, about {MAPS_PER_THREAD} mappings per thread"));
        }
        if let Some(t) = self.threads_max {
            consider(
                t.saturating_sub(self.threads_now + MARGIN) / 2,
                format!("kernel.threads-max = {t}, shared by all"),
            );
        }
        if let Some(n) = self.nproc
            && n != usize::MAX
        {
            consider(n.saturating_sub(self.threads_now + MARGIN) / 2, format!("RLIMIT_NPROC = {n}, per user"));
        }
        best
    }

    /// Raises the soft descriptor limit to the hard one (allowed without privileges) and
    /// returns the new soft limit.
    pub fn raise_nofile() -> usize {
        let Some((soft, hard)) = rlimit(libc::RLIMIT_NOFILE) else { return 1024 };
        if soft < hard {
            let r = libc::rlimit { rlim_cur: hard as libc::rlim_t, rlim_max: hard as libc::rlim_t };
            // SAFETY: setrlimit reads the struct we own; raising soft up to hard is allowed.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
                return hard;
            }
        }
        soft
    }
}

/// Checks that `wanted` threads can be alive at once in this process; the error names the
/// limit that decides it on this machine.
pub fn check_threads(param: &str, wanted: usize) -> Result<(), ParamError> {
    let (headroom, why) = Limits::current().thread_headroom();
    if wanted <= headroom {
        Ok(())
    } else {
        Err(ParamError::new(param, format!("at most {headroom} threads alive at once on this machine ({why})"), wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_and_leave_room_for_a_few_threads() {
        let l = Limits::current();
        assert!(l.threads_now >= 1 && l.maps_now > 0, "{l:?}");
        let (room, why) = l.thread_headroom();
        assert!(room >= 64, "{room} ({why})");
        assert!(check_threads("threads", 2).is_ok());
        let e = check_threads("threads", usize::MAX / 2).unwrap_err();
        assert!(e.to_string().contains("threads alive at once"), "{e}");
    }

    #[test]
    fn headroom_follows_the_smallest_limit() {
        let l = Limits {
            threads_max: Some(100_000),
            nproc: Some(5_000),
            max_map_count: Some(65_530),
            maps_now: 530,
            threads_now: 1,
            nofile: (1024, 4096),
        };
        let (room, why) = l.thread_headroom();
        assert_eq!(room, (5_000 - 1 - MARGIN) / 2);
        assert!(why.contains("RLIMIT_NPROC"), "{why}");
    }
}
