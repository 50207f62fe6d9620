//! Programs, processes and threads: ids, what threads of one process share, and what a
//! child process does not.

use crate::lab::os::{pid, proc_status, tid};
use crate::lab::together::{Gate, run_together};
use crate::lab::{Figure, Finding, LabError, ParamError, Report, RunError, Table, check_range, thread_count};
use serde::{Deserialize, Serialize};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Parameters of [`processes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Processes {
    /// Threads to start in this process: 1..=64.
    pub threads: usize,
}

impl Default for Processes {
    fn default() -> Self {
        Processes { threads: 4 }
    }
}

/// One thread of this process, as it saw itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadView {
    pub name: String,
    pub pid: i64,
    pub tid: i64,
    /// Address of a local variable on this thread's stack.
    pub stack_local: usize,
    /// Address of the one heap allocation all threads were given.
    pub shared_heap: usize,
    /// Address of a `static` as this thread sees it.
    pub static_item: usize,
    /// `Threads:` of /proc/self/status while every spawned thread was alive.
    pub threads_in_process: usize,
}

/// The child process, as it described itself (`/proc/self/status` read by `cat`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildView {
    pub program: String,
    pub pid: i64,
    pub ppid: i64,
    pub threads: usize,
}

/// Result of [`processes`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessesReport {
    pub params: Processes,
    pub main: ThreadView,
    pub spawned: Vec<ThreadView>,
    pub child: ChildView,
    pub threads_before: usize,
    pub threads_after: usize,
}

static SHARED_STATIC: u64 = 42;

fn view(name: String, shared: &[u64], alive: usize) -> ThreadView {
    let local = 0u64;
    ThreadView {
        name,
        pid: pid(),
        tid: tid(),
        stack_local: std::hint::black_box(&local) as *const u64 as usize,
        shared_heap: shared.as_ptr() as usize,
        static_item: &SHARED_STATIC as *const u64 as usize,
        threads_in_process: alive,
    }
}

impl Processes {
    /// Checks every parameter; nothing has been started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("threads", self.threads, 1..=64)?;
        Ok(())
    }
}

/// Starts a child process (`cat /proc/self/status`, which describes itself) and
/// `threads` threads that each report their ids and three addresses: a stack local, one
/// shared heap allocation and a `static`. The process's thread count is read before,
/// while all threads are alive, and after they are joined.
pub fn processes(p: &Processes) -> Result<ProcessesReport, LabError> {
    p.validate()?;
    let threads_before = thread_count();
    let child = child_view().map_err(|e| RunError::new("starting `cat /proc/self/status`", e))?;
    let shared = vec![7u64; 16];
    // The last thread to arrive counts the threads (all are alive then) and releases
    // the others; every wait is bounded.
    let arrived = AtomicUsize::new(0);
    let alive = AtomicUsize::new(0);
    let counted = Gate::new();
    let done = run_together(
        p.threads,
        |_| Ok(()),
        |i| {
            let v = view(format!("thread {i}"), &shared, 0);
            if arrived.fetch_add(1, Ordering::AcqRel) + 1 == p.threads {
                alive.store(thread_count(), Ordering::Release);
                counted.open();
            } else {
                counted.wait(Duration::from_secs(30));
            }
            v
        },
    )
    .map_err(|e| RunError::new("starting the threads", e))?;
    let alive = alive.load(Ordering::Acquire);
    let spawned: Vec<ThreadView> = done
        .results
        .into_iter()
        .map(|mut v| {
            v.threads_in_process = alive;
            v
        })
        .collect();
    // `join` returns when a thread's id is released, a moment before the kernel drops it
    // from the process's count: give the count up to 100 ms to settle.
    let settle = Instant::now();
    let mut threads_after = thread_count();
    while threads_after > threads_before && settle.elapsed() < Duration::from_millis(100) {
        std::thread::sleep(Duration::from_millis(1));
        threads_after = thread_count();
    }
    Ok(ProcessesReport {
        params: p.clone(),
        main: view("main".into(), &shared, alive),
        spawned,
        child,
        threads_before,
        threads_after,
    })
}

fn child_view() -> std::io::Result<ChildView> {
    let mut c = Command::new("cat").arg("/proc/self/status").stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            return Err(std::io::Error::other("child did not finish within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = c.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |f: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(f)?.strip_prefix(':').map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    Ok(ChildView {
        program: "cat /proc/self/status".into(),
        pid: field("Pid").parse().unwrap_or(-1),
        ppid: field("PPid").parse().unwrap_or(-1),
        threads: field("Threads").parse().unwrap_or(0),
    })
}

impl ProcessesReport {
    /// Whether every thread saw the same process id, heap address and static address,
    /// and a different thread id and stack address.
    pub fn threads_share_memory_not_stacks(&self) -> bool {
        let all: Vec<&ThreadView> = std::iter::once(&self.main).chain(&self.spawned).collect();
        let mut tids: Vec<i64> = all.iter().map(|v| v.tid).collect();
        let mut stacks: Vec<usize> = all.iter().map(|v| v.stack_local).collect();
        tids.sort_unstable();
        tids.dedup();
        stacks.sort_unstable();
        stacks.dedup();
        all.iter().all(|v| {
            v.pid == self.main.pid && v.shared_heap == self.main.shared_heap && v.static_item == self.main.static_item
        }) && tids.len() == all.len()
            && stacks.len() == all.len()
    }
}

impl Report for ProcessesReport {
    fn findings(&self) -> Vec<Finding> {
        let all: Vec<&ThreadView> = std::iter::once(&self.main).chain(&self.spawned).collect();
        let distinct = |f: &dyn Fn(&ThreadView) -> usize| {
            let mut v: Vec<usize> = all.iter().map(|t| f(t)).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        let n = all.len();
        let pids = distinct(&|t| t.pid as usize);
        let tids = distinct(&|t| t.tid as usize);
        let heaps = distinct(&|t| t.shared_heap);
        let statics = distinct(&|t| t.static_item);
        let stacks = distinct(&|t| t.stack_local);
        let mut out = vec![
            Finding::note(format!(
                "The {n} threads (main + {}) reported {pids} PID(s) and {tids} different TIDs",
                self.spawned.len()
            )),
            Finding::note(format!(
                "They saw {heaps} address(es) for the shared heap allocation and {statics} for the static, \
                 but {stacks} different stack addresses for their locals",
            )),
            Finding::note(format!(
                "This process had {} thread(s) before, {} while the {} spawned ones ran, {} after joining them",
                self.threads_before,
                self.main.threads_in_process,
                self.spawned.len(),
                self.threads_after
            )),
        ];
        out.push(Finding::note(format!(
            "The child is PID {}, its parent PID {} is {}, and it has {} thread(s)",
            self.child.pid,
            self.child.ppid,
            if self.child.ppid == self.main.pid { "this process" } else { "not this process" },
            self.child.threads
        )));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let f =
            Figure::bars("Threads live inside a process; a child process is a new one", "moment / process", "threads")
                .bar("this process, before", "this process", self.threads_before as f64, None)
                .bar(
                    &format!("while {} run", self.params.threads),
                    "this process",
                    self.main.threads_in_process as f64,
                    None,
                )
                .bar("after join", "this process", self.threads_after as f64, None)
                .bar("child process", "child process", self.child.threads as f64, None)
                .legend(crate::lab::Legend::UpperRight);
        vec![f.note(format!(
            "This process is PID {}; the child (`{}`) is PID {} with parent {}.",
            self.main.pid, self.child.program, self.child.pid, self.child.ppid
        ))]
    }

    fn table(&self) -> Table {
        let hex = |a: usize| format!("{a:#x}");
        let mut t = Table::new(
            "Who is who: ids and addresses",
            &["who", "PID", "TID", "stack local", "shared heap", "static", "threads in its process"],
        );
        for v in std::iter::once(&self.main).chain(&self.spawned) {
            t.row(vec![
                v.name.clone(),
                v.pid.to_string(),
                v.tid.to_string(),
                hex(v.stack_local),
                hex(v.shared_heap),
                hex(v.static_item),
                v.threads_in_process.to_string(),
            ]);
        }
        t.row(vec![
            format!("child: {}", self.child.program),
            self.child.pid.to_string(),
            self.child.pid.to_string(),
            "(own address space)".into(),
            "(own address space)".into(),
            "(own address space)".into(),
            self.child.threads.to_string(),
        ]);
        t.note(format!(
            "Threads of this process: {} before, {} while the spawned ones ran, {} after joining. Child's parent PID: {}. {}",
            self.threads_before,
            self.main.threads_in_process,
            self.threads_after,
            self.child.ppid,
            proc_status("Name").map(|n| format!("This process is called {n:?}.")).unwrap_or_default()
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_share_the_process_and_the_child_does_not() {
        assert!(processes(&Processes { threads: 0 }).is_err());
        let r = processes(&Processes { threads: 3 }).unwrap();
        assert_eq!(r.spawned.len(), 3);
        assert!(r.threads_share_memory_not_stacks());
        assert!(r.main.threads_in_process >= 4, "{}", r.main.threads_in_process);
        assert_ne!(r.child.pid, r.main.pid);
        assert_eq!(r.child.ppid, r.main.pid);
        assert_eq!(r.child.threads, 1);
        assert_eq!(r.table().rows.len(), 5);
    }
}
