//! The atomics and cells the lock-free primitives are built from: std's in normal builds,
//! loom's when model checking (`--cfg conclab_loom`), behind one API.

#[cfg(conclab_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8};
#[cfg(not(conclab_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8};

#[cfg(conclab_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's closure API (`with`, `with_mut`), so the same code
/// compiles against both; loom's version checks every access for a missing happens-before.
#[cfg(not(conclab_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(conclab_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

/// The loom model the primitives' tests run in: at most 3 preemptions per execution,
/// which keeps the search to seconds while covering the known bug patterns. The search is
/// exhaustive only within that bound, and loom's memory model has gaps of its own: it
/// never produces load buffering, and it treats `SeqCst` loads and stores as `AcqRel`
/// (so it raises false alarms on code that relies on them; `fence(SeqCst)` it models).
#[cfg(all(test, conclab_loom))]
pub(crate) fn loom_model() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b
}

/// What a waiting loop does between two looks at the lock: a CPU pause hint normally; a
/// yield to loom's scheduler under the model checker (which otherwise spins forever).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(conclab_loom)]
    loom::thread::yield_now();
    #[cfg(not(conclab_loom))]
    std::hint::spin_loop();
}
