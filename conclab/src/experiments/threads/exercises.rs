//! Self-check exercises of notebook 03: the reader writes a ticket lock, or a transfer
//! that cannot deadlock, and a checker hammers it on real threads — bounded in time,
//! every thread joined — and answers with a [`Verdict`].

use crate::lab::Verdict;
use crate::lab::findings::group;
use crate::lab::together::run_together;
use crate::lab::wait::spin_until;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ ticket lock

/// The three operations of a ticket lock. The checker does the waiting itself (bounded,
/// so a wrong lock cannot hang the notebook): a thread takes a ticket, waits until
/// `now_serving` shows it, runs its critical section, and calls `done_serving`.
///
/// ```
/// use conclab::experiments::threads::exercises::{TicketLock, check_ticket_lock};
/// use std::sync::atomic::{AtomicU32, Ordering::*};
/// #[derive(Default)]
/// struct Mine { next: AtomicU32, serving: AtomicU32 }
/// impl TicketLock for Mine {
///     fn take_ticket(&self) -> u32 { self.next.fetch_add(1, Relaxed) }
///     fn now_serving(&self) -> u32 { self.serving.load(Acquire) }
///     fn done_serving(&self, ticket: u32) { self.serving.store(ticket.wrapping_add(1), Release) }
/// }
/// assert!(check_ticket_lock::<Mine>().passed);
/// ```
pub trait TicketLock: Default + Sync {
    /// Hands out the next ticket: every caller a different one, in order 0, 1, 2, …
    fn take_ticket(&self) -> u32;
    /// The ticket whose holder may enter now.
    fn now_serving(&self) -> u32;
    /// Called by the holder of `ticket` when it leaves: lets the next ticket in.
    fn done_serving(&self, ticket: u32);
}

const TICKET: &str = "ticket lock";

/// Hammers the reader's [`TicketLock`]: a few threads each enter and leave the critical
/// section many times. Inside, a plain read-then-write of a counter (which loses updates
/// if two threads are in at once), a count of threads inside, and a check that tickets
/// are served in the order they were handed out. Every wait gives up after 2 s.
pub fn check_ticket_lock<L: TicketLock>() -> Verdict {
    let threads = crate::lab::cores().clamp(2, 4);
    let rounds: u64 = 20_000;
    let check = TicketCheck::<L>::new();
    let t0 = Instant::now();
    let run = run_together(threads, |_| Ok(()), |_| check.enter_and_leave(rounds));
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if let Err(e) = run {
        return Verdict::not_yet(
            TICKET,
            format!("the run failed: {e}"),
            "re-run the cell; if it fails again, restart the kernel",
        );
    }
    let want = threads as u64 * rounds;
    check.fault(want).unwrap_or_else(|| {
        Verdict::pass(
            TICKET,
            format!(
                "{threads} threads × {} entries in {} ms: never two inside at once, every ticket served in order, \
                 no update lost. (x86 cannot show a missing Acquire/Release: check that now_serving loads with \
                 Acquire and done_serving stores with Release.)",
                group(rounds),
                crate::lab::fmt_num(ms)
            ),
        )
    })
}

/// The reader's lock under test and what the checker's threads saw while they used it.
struct TicketCheck<L> {
    lock: L,
    /// Read-then-write inside: loses updates if unprotected.
    counter: AtomicU64,
    /// Threads inside the critical section right now.
    inside: AtomicUsize,
    /// Whether two threads were ever inside at once.
    overlap: AtomicBool,
    /// The first entry whose ticket was served out of turn (`u64::MAX`: none).
    out_of_order: AtomicU64,
    /// Entries so far, all threads.
    entries: AtomicU64,
    /// Whether a thread gave up waiting for its ticket (all the others then stop too).
    stuck: AtomicBool,
}

impl<L: TicketLock> TicketCheck<L> {
    /// A fresh lock, nothing seen yet.
    fn new() -> Self {
        TicketCheck {
            lock: L::default(),
            counter: AtomicU64::new(0),
            inside: AtomicUsize::new(0),
            overlap: AtomicBool::new(false),
            out_of_order: AtomicU64::new(u64::MAX),
            entries: AtomicU64::new(0),
            stuck: AtomicBool::new(false),
        }
    }

    /// One thread's work: `rounds` times take a ticket, wait (2 s at most) until it is
    /// served, run the critical section and leave. Stops early once any thread is stuck.
    fn enter_and_leave(&self, rounds: u64) {
        for _ in 0..rounds {
            if self.stuck.load(Ordering::Relaxed) {
                return;
            }
            let ticket = self.lock.take_ticket();
            let deadline = Instant::now() + Duration::from_secs(2);
            if spin_until(deadline, || self.stuck.load(Ordering::Relaxed) || self.lock.now_serving() == ticket).is_err()
            {
                self.stuck.store(true, Ordering::Relaxed);
                return;
            }
            if self.stuck.load(Ordering::Relaxed) {
                return;
            }
            self.critical_section(ticket);
            self.lock.done_serving(ticket);
        }
    }

    /// Inside the lock: notes an overlap or a ticket out of turn, and increments the
    /// counter with a plain read-then-write.
    fn critical_section(&self, ticket: u32) {
        if self.inside.fetch_add(1, Ordering::AcqRel) != 0 {
            self.overlap.store(true, Ordering::Relaxed);
        }
        let k = self.entries.fetch_add(1, Ordering::Relaxed);
        if u64::from(ticket) != k % (1 << 32) {
            let _ = self.out_of_order.compare_exchange(u64::MAX, k, Ordering::Relaxed, Ordering::Relaxed);
        }
        let v = self.counter.load(Ordering::Relaxed);
        for i in 0..20 {
            std::hint::black_box(i);
        }
        self.counter.store(v + 1, Ordering::Relaxed);
        self.inside.fetch_sub(1, Ordering::AcqRel);
    }

    /// After all threads were joined: the first fault found, as a verdict with its hint
    /// (`None`: none, the counter reached `want`).
    fn fault(&self, want: u64) -> Option<Verdict> {
        let got = self.counter.load(Ordering::Relaxed);
        if self.overlap.load(Ordering::Relaxed) {
            return Some(Verdict::not_yet(
                TICKET,
                format!(
                    "two threads were inside at the same time; the counter reached {} of {}",
                    group(got),
                    group(want)
                ),
                "two threads got the same ticket: take_ticket must read and increment in one atomic step (fetch_add)",
            ));
        }
        if self.stuck.load(Ordering::Relaxed) {
            return Some(Verdict::not_yet(
                TICKET,
                format!(
                    "a thread waited over 2 s for its ticket to come up, after {} of {} entries",
                    group(self.entries.load(Ordering::Relaxed)),
                    group(want)
                ),
                "does done_serving move now_serving on to the next ticket (ticket + 1), and does take_ticket \
                 increment the ticket counter?",
            ));
        }
        let first_bad = self.out_of_order.load(Ordering::Relaxed);
        if first_bad != u64::MAX {
            return Some(Verdict::not_yet(
                TICKET,
                format!(
                    "entry number {} held a ticket other than {first_bad}: tickets were not served in order",
                    group(first_bad)
                ),
                "tickets must be handed out 0, 1, 2, … (fetch_add(1) from 0), and served in that order",
            ));
        }
        (got != want).then(|| {
            Verdict::not_yet(
                TICKET,
                format!("the counter reached {} of {}", group(got), group(want)),
                "a write inside the lock was lost: use Acquire in now_serving and Release in done_serving",
            )
        })
    }
}

// ------------------------------------------------------------------ lock order

thread_local! {
    /// Accounts this thread holds right now.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// What the accounts of one check share: how long a wait may last before it counts as a
/// deadlock, and what was seen.
#[derive(Debug)]
struct Watch {
    wait: Duration,
    held_two: AtomicBool,
    deadlocked: AtomicBool,
}

/// An account behind a lock, for [`check_lock_order`]. `lock` pauses a moment after a
/// thread takes its *first* account (as real code does some work there), so two threads
/// that lock in opposite orders really do meet; a wait that lasts far longer than any
/// transfer counts as a deadlock and ends that transfer (the checker catches it), so a
/// wrong solution is reported, not hung.
#[derive(Debug)]
pub struct Account {
    id: usize,
    balance: parking_lot::Mutex<i64>,
    watch: Arc<Watch>,
}

/// A locked account: dereferences to its balance; dropping it unlocks.
pub struct AccountGuard<'a> {
    guard: parking_lot::MutexGuard<'a, i64>,
}

/// Unwinds a transfer that deadlocked (not a panic: no message, no hook).
struct DeadlockUnwind;

impl Account {
    /// The account's number: 0, 1, … (use it to order your locks).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Locks the account; waits as long as it takes, unless that is a deadlock.
    pub fn lock(&self) -> AccountGuard<'_> {
        let Some(guard) = self.balance.try_lock_for(self.watch.wait) else {
            self.watch.deadlocked.store(true, Ordering::Relaxed);
            std::panic::resume_unwind(Box::new(DeadlockUnwind));
        };
        let held = HELD.with(|h| {
            h.set(h.get() + 1);
            h.get()
        });
        if held == 1 {
            std::thread::sleep(Duration::from_micros(50)); // some work before the second lock
        } else {
            self.watch.held_two.store(true, Ordering::Relaxed);
        }
        AccountGuard { guard }
    }
}

impl std::ops::Deref for AccountGuard<'_> {
    type Target = i64;
    fn deref(&self) -> &i64 {
        &self.guard
    }
}

impl std::ops::DerefMut for AccountGuard<'_> {
    fn deref_mut(&mut self) -> &mut i64 {
        &mut self.guard
    }
}

impl Drop for AccountGuard<'_> {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
    }
}

const ORDER: &str = "transfers without deadlock";

/// Runs the reader's `transfer(accounts, from, to, amount)` 1 000 times on two threads
/// at once — one moving 1 from account 0 to 1, the other from 1 to 0 — and checks that
/// no run deadlocks (a wait over 200 ms counts as one, and ends the check), that both
/// accounts are back at 100 after every run, and that each transfer held both accounts
/// at once (so nobody could see the money in neither).
pub fn check_lock_order<F>(transfer: F) -> Verdict
where
    F: Fn(&[Account], usize, usize, i64) + Sync,
{
    check_lock_order_runs(transfer, 1_000)
}

fn check_lock_order_runs<F>(transfer: F, runs: usize) -> Verdict
where
    F: Fn(&[Account], usize, usize, i64) + Sync,
{
    let watch = Arc::new(Watch {
        wait: Duration::from_millis(200),
        held_two: AtomicBool::new(false),
        deadlocked: AtomicBool::new(false),
    });
    let t0 = Instant::now();
    for run in 1..=runs {
        let accounts: Vec<Account> =
            (0..2).map(|id| Account { id, balance: parking_lot::Mutex::new(100), watch: Arc::clone(&watch) }).collect();
        let result = run_together(
            2,
            |_| Ok(()),
            |i| {
                let (from, to) = if i == 0 { (0, 1) } else { (1, 0) };
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| transfer(&accounts, from, to, 1)))
            },
        );
        let results = match result {
            Ok(t) => t.results,
            Err(e) => {
                return Verdict::not_yet(ORDER, format!("run {run} failed: {e}"), "re-run the cell");
            }
        };
        if watch.deadlocked.load(Ordering::Relaxed) {
            return Verdict::not_yet(
                ORDER,
                format!(
                    "run {run} of {runs} deadlocked: each thread held one account and waited over 200 ms for the \
                     other's"
                ),
                "lock the two accounts in one global order — the lower id() first — whatever the direction of \
                 the transfer",
            );
        }
        if let Some(payload) = results.into_iter().find_map(Result::err) {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            return Verdict::not_yet(ORDER, format!("run {run}: your transfer panicked: {msg}"), "read the message");
        }
        let balances: Vec<i64> = accounts.iter().map(|a| *a.balance.lock()).collect();
        if balances != [100, 100] {
            return Verdict::not_yet(
                ORDER,
                format!("after run {run} the balances were {balances:?}, not [100, 100] (one unit moved each way)"),
                "take `amount` from accounts[from] and add it to accounts[to]",
            );
        }
    }
    if !watch.held_two.load(Ordering::Relaxed) {
        return Verdict::not_yet(
            ORDER,
            format!("{runs} runs without deadlock, but no transfer ever held both accounts at once"),
            "between the two updates the money was in neither account, for any other thread to see: hold both \
             locks while you move it (in a global order)",
        );
    }
    Verdict::pass(
        ORDER,
        format!(
            "{runs} runs of two opposite transfers at once in {} ms: no deadlock, both locks held for every move, \
             balances back at [100, 100] every time",
            crate::lab::fmt_num(t0.elapsed().as_secs_f64() * 1e3)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Default)]
    struct Good {
        next: AtomicU32,
        serving: AtomicU32,
    }
    impl TicketLock for Good {
        fn take_ticket(&self) -> u32 {
            self.next.fetch_add(1, Ordering::Relaxed)
        }
        fn now_serving(&self) -> u32 {
            self.serving.load(Ordering::Acquire)
        }
        fn done_serving(&self, ticket: u32) {
            self.serving.store(ticket.wrapping_add(1), Ordering::Release)
        }
    }

    /// Reads, then increments: two threads can take the same ticket.
    #[derive(Default)]
    struct SameTicket {
        next: AtomicU32,
        serving: AtomicU32,
    }
    impl TicketLock for SameTicket {
        fn take_ticket(&self) -> u32 {
            let t = self.next.load(Ordering::Relaxed);
            for i in 0..50 {
                std::hint::black_box(i);
            }
            self.next.store(t + 1, Ordering::Relaxed);
            t
        }
        fn now_serving(&self) -> u32 {
            self.serving.load(Ordering::Acquire)
        }
        fn done_serving(&self, ticket: u32) {
            self.serving.store(ticket.wrapping_add(1), Ordering::Release)
        }
    }

    /// Never lets the next ticket in.
    #[derive(Default)]
    struct Stuck {
        next: AtomicU32,
        serving: AtomicU32,
    }
    impl TicketLock for Stuck {
        fn take_ticket(&self) -> u32 {
            self.next.fetch_add(1, Ordering::Relaxed)
        }
        fn now_serving(&self) -> u32 {
            self.serving.load(Ordering::Acquire)
        }
        fn done_serving(&self, ticket: u32) {
            self.serving.store(ticket, Ordering::Release)
        }
    }

    #[test]
    fn a_ticket_lock_passes_and_broken_ones_get_hints() {
        let v = check_ticket_lock::<Good>();
        assert!(v.passed, "{v}");
        let v = check_ticket_lock::<SameTicket>();
        assert!(!v.passed, "{v}");
        let v = check_ticket_lock::<Stuck>();
        assert!(!v.passed && v.detail.contains("waited over 2 s"), "{v}");
    }

    fn ordered(accounts: &[Account], from: usize, to: usize, amount: i64) {
        let (lo, hi) = if accounts[from].id() < accounts[to].id() { (from, to) } else { (to, from) };
        let mut a = accounts[lo].lock();
        let mut b = accounts[hi].lock();
        let (src, dst) = if lo == from { (&mut a, &mut b) } else { (&mut b, &mut a) };
        **src -= amount;
        **dst += amount;
    }

    fn naive(accounts: &[Account], from: usize, to: usize, amount: i64) {
        let mut a = accounts[from].lock();
        let mut b = accounts[to].lock();
        *a -= amount;
        *b += amount;
    }

    fn one_at_a_time(accounts: &[Account], from: usize, to: usize, amount: i64) {
        *accounts[from].lock() -= amount;
        *accounts[to].lock() += amount;
    }

    #[test]
    fn lock_order_passes_and_opposite_orders_deadlock() {
        let v = check_lock_order_runs(ordered, 200);
        assert!(v.passed, "{v}");
        let v = check_lock_order_runs(naive, 200);
        assert!(!v.passed && v.detail.contains("deadlocked"), "{v}");
        let v = check_lock_order_runs(one_at_a_time, 50);
        assert!(!v.passed && v.detail.contains("no transfer ever held both"), "{v}");
        assert_eq!(HELD.with(Cell::get), 0);
    }
}
