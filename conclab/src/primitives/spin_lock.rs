//! A spin lock: the smallest correct mutual-exclusion lock, and the baseline that
//! `std::sync::Mutex` and `parking_lot::Mutex` improve on by putting waiters to sleep.

use super::sync::{AtomicBool, UnsafeCell, spin_hint};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// A test-and-test-and-set spin lock around a `T`.
///
/// A waiter never sleeps: it re-reads the flag until it looks free (a plain load keeps
/// the cache line shared instead of bouncing it between CPUs), then tries to take it
/// with one compare-and-swap. That is fast when locks are held briefly and every thread has a
/// CPU of its own, and wasteful when the holder is descheduled: the waiters burn their
/// time slices until it runs again (notebook 03 measures both).
///
/// ```
/// use conclab::primitives::SpinLock;
/// let counter = SpinLock::new(0u64);
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| for _ in 0..1000 { *counter.lock() += 1 });
///     }
/// });
/// assert_eq!(counter.into_inner(), 4000);
/// ```
#[derive(Debug)]
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to the value to one thread at a time (see `lock`),
// so sharing the lock between threads only ever moves a `T` between them: `T: Send` suffices.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> SpinLock<T> {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Spins until the lock is free and takes it; the guard unlocks when dropped.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            // Acquire: everything the previous holder wrote before its Release store in
            // `SpinGuard::drop` is visible to us once we own the flag. (A compare-and-swap
            // rather than `swap(true)`: a failed attempt writes nothing, which also keeps
            // loom's bounded store history from looping forever on this model.)
            if self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_ok() {
                return SpinGuard { lock: self, _value: PhantomData };
            }
            // Test before test-and-set: wait with plain loads, which do not need the
            // cache line exclusively, instead of hammering it with read-modify-writes.
            while self.locked.load(Relaxed) {
                spin_hint();
            }
        }
    }

    /// Takes the lock if it is free right now.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        match self.locked.compare_exchange(false, true, Acquire, Relaxed) {
            Ok(_) => Some(SpinGuard { lock: self, _value: PhantomData }),
            Err(_) => None,
        }
    }

    /// Whether some thread holds the lock at this moment (already stale when it returns).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Relaxed)
    }

    /// The value, consuming the lock (no other thread can hold it any more).
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        SpinLock::new(T::default())
    }
}

/// Exclusive access to a [`SpinLock`]'s value; unlocks on drop.
#[derive(Debug)]
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// Makes the guard `Sync` only for `T: Sync`, like `&mut T` (a shared guard hands out `&T`).
    _value: PhantomData<&'a mut T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while `locked` is true and was set by the compare-and-swap
        // that created it, so no other guard (and no other reference) exists.
        self.lock.value.with(|p| unsafe { &*p })
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        self.lock.value.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // Release: our writes to the value happen-before the next holder's Acquire compare-and-swap.
        self.lock.locked.store(false, Release);
    }
}

#[cfg(all(test, not(conclab_loom)))]
mod tests {
    use super::*;

    #[test]
    fn excludes_and_counts_exactly() {
        let lock = SpinLock::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(lock.into_inner(), 40_000);
    }

    #[test]
    fn try_lock_fails_while_held() {
        let lock = SpinLock::new(1);
        let g = lock.lock();
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none());
        drop(g);
        assert_eq!(*lock.try_lock().unwrap(), 1);
        assert!(!lock.is_locked());
    }
}

#[cfg(all(test, conclab_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn two_threads_never_hold_it_together() {
        crate::primitives::sync::loom_model().check(|| {
            let lock = Arc::new(SpinLock::new(0u32));
            let other = lock.clone();
            let t = loom::thread::spawn(move || *other.lock() += 1);
            *lock.lock() += 1;
            t.join().unwrap();
            assert_eq!(*lock.lock(), 2);
        });
    }

    #[test]
    fn try_lock_and_lock_exclude_each_other() {
        crate::primitives::sync::loom_model().check(|| {
            let lock = Arc::new(SpinLock::new(0u32));
            let other = lock.clone();
            let t = loom::thread::spawn(move || {
                if let Some(mut g) = other.try_lock() {
                    *g += 10;
                }
            });
            *lock.lock() += 1;
            t.join().unwrap();
            let v = *lock.lock();
            assert!(v == 1 || v == 11, "{v}");
        });
    }

    /// The same lock with Relaxed instead of Acquire/Release: nothing orders the previous
    /// holder's writes before ours, and loom reports the unsynchronised access to the value.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn relaxed_acquire_is_caught() {
        struct Broken {
            locked: AtomicBool,
            value: UnsafeCell<u32>,
        }
        // SAFETY: deliberately wrong ordering; only ever run under loom, which must object.
        unsafe impl Sync for Broken {}
        impl Broken {
            fn add(&self) {
                while self.locked.compare_exchange(false, true, Relaxed, Relaxed).is_err() {
                    spin_hint();
                }
                // SAFETY: not actually safe (Relaxed), which is what the test shows.
                self.value.with_mut(|p| unsafe { *p += 1 });
                self.locked.store(false, Relaxed);
            }
        }
        crate::primitives::sync::loom_model().check(|| {
            let b = Arc::new(Broken { locked: AtomicBool::new(false), value: UnsafeCell::new(0) });
            let other = b.clone();
            let t = loom::thread::spawn(move || other.add());
            b.add();
            t.join().unwrap();
        });
    }
}
