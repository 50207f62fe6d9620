//! A fixed-size thread pool: threads started once and fed jobs over a channel, so each
//! job costs a channel send and a wake-up instead of a thread's creation and exit.

use crossbeam::channel::{Sender, unbounded};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// `n` worker threads taking boxed jobs from one shared (multi-consumer) channel.
///
/// Dropping the pool (or calling [`ThreadPool::join`]) closes the channel; each worker
/// finishes the jobs already queued, sees the channel closed and exits, and the pool
/// joins every worker — no thread outlives it. A job that panics is caught and counted;
/// its worker carries on.
///
/// ```
/// use conclab::primitives::ThreadPool;
/// let pool = ThreadPool::new(2).unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// for i in 0..10u64 {
///     let tx = tx.clone();
///     pool.execute(move || tx.send(i * i).unwrap());
/// }
/// pool.join();
/// assert_eq!(rx.try_iter().sum::<u64>(), 285);
/// ```
#[derive(Debug)]
pub struct ThreadPool {
    sender: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    panics: Arc<AtomicUsize>,
}

impl ThreadPool {
    /// Starts `n` workers (at least one) named `pool-0`, `pool-1`, …; an error if the OS
    /// refuses a thread (the ones already started are stopped and joined first).
    pub fn new(n: usize) -> std::io::Result<ThreadPool> {
        let (tx, rx) = unbounded::<Job>();
        let panics = Arc::new(AtomicUsize::new(0));
        let mut pool = ThreadPool { sender: Some(tx), workers: Vec::new(), panics: panics.clone() };
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let panics = panics.clone();
            let worker = std::thread::Builder::new().name(format!("pool-{i}")).spawn(move || {
                // recv fails once the sender is dropped and the queue is empty.
                while let Ok(job) = rx.recv() {
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        panics.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            match worker {
                Ok(h) => pool.workers.push(h),
                Err(e) => return Err(e), // `pool` drops here and joins the started workers
            }
        }
        Ok(pool)
    }

    /// Number of worker threads.
    pub fn size(&self) -> usize {
        self.workers.len()
    }

    /// Queues `job` for the next free worker.
    pub fn execute<F: FnOnce() + Send + 'static>(&self, job: F) {
        if let Some(tx) = &self.sender {
            // Sending fails only when every worker is gone, which cannot happen while
            // `self` holds the sender (workers exit only after it is dropped).
            let _ = tx.send(Box::new(job));
        }
    }

    /// Jobs that panicked so far.
    pub fn panicked_jobs(&self) -> usize {
        self.panics.load(Ordering::Relaxed)
    }

    /// Runs the queued jobs to completion and joins every worker.
    pub fn join(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.sender.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(all(test, not(conclab_loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_every_job_and_survives_a_panic() {
        let pool = ThreadPool::new(3).unwrap();
        assert_eq!(pool.size(), 3);
        let (tx, rx) = mpsc::channel();
        for i in 0..100u64 {
            let tx = tx.clone();
            pool.execute(move || tx.send(i).unwrap());
        }
        pool.execute(|| panic!("a job panics (expected in this test)"));
        let tx2 = tx.clone();
        pool.execute(move || tx2.send(1000).unwrap());
        drop(tx);
        let got: Vec<u64> = (0..101).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(got.iter().sum::<u64>(), 4950 + 1000);
        let panics = pool.panics.clone();
        pool.join();
        assert_eq!(panics.load(Ordering::Relaxed), 1);
    }
}
