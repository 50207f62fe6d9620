//! A value published once from one thread to others: the message-passing pattern, a
//! Release store of a flag after the data, an Acquire load of the flag before reading it.

use super::sync::{AtomicU8, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// A slot that is written at most once and then read by any number of threads without
/// locking (what `std::sync::OnceLock` does, minus blocking for the writer).
///
/// The invariant: the value is written only by the one thread that moved the state from
/// EMPTY to WRITING, and read only after a reader saw READY with an Acquire load. The
/// writer's Release store of READY makes its write of the value happen-before every such
/// read. With Relaxed instead, a reader on a weakly ordered CPU (ARM, POWER) could see
/// READY and still read stale memory; loom finds that in this module's model tests.
///
/// ```
/// use conclab::primitives::OnceSlot;
/// let slot = OnceSlot::new();
/// std::thread::scope(|s| {
///     s.spawn(|| slot.set(String::from("hello")).unwrap());
///     s.spawn(|| while slot.get().is_none() { std::hint::spin_loop() });
/// });
/// assert_eq!(slot.get().map(String::as_str), Some("hello"));
/// assert!(slot.set(String::from("again")).is_err());
/// ```
#[derive(Debug)]
pub struct OnceSlot<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once by one thread and afterwards only read through `&T`
// (readers share it: `T: Sync`); it may be dropped by another thread than the writer's (`T: Send`).
unsafe impl<T: Send + Sync> Sync for OnceSlot<T> {}

impl<T> OnceSlot<T> {
    /// An empty slot.
    pub fn new() -> OnceSlot<T> {
        OnceSlot { state: AtomicU8::new(EMPTY), value: UnsafeCell::new(MaybeUninit::uninit()) }
    }

    /// Stores `value` if the slot is empty; gives it back if another `set` came first.
    pub fn set(&self, value: T) -> Result<(), T> {
        // Only one thread wins EMPTY → WRITING; it alone touches the value until READY.
        if self.state.compare_exchange(EMPTY, WRITING, Relaxed, Relaxed).is_err() {
            return Err(value);
        }
        // SAFETY: we own the slot exclusively (state WRITING), nobody reads before READY.
        self.value.with_mut(|p| unsafe { (*p).write(value) });
        // Release: publishes the write above to whoever loads READY with Acquire.
        self.state.store(READY, Release);
        Ok(())
    }

    /// The value, if it has been published.
    pub fn get(&self) -> Option<&T> {
        // Acquire pairs with the Release in `set`: seeing READY means seeing the value.
        if self.state.load(Acquire) == READY {
            // SAFETY: READY is stored only after the value was initialised, and it is never
            // written again; shared references to it are therefore fine.
            Some(self.value.with(|p| unsafe { (*p).assume_init_ref() }))
        } else {
            None
        }
    }

    /// Whether a value has been published.
    pub fn is_set(&self) -> bool {
        self.state.load(Acquire) == READY
    }
}

impl<T> Default for OnceSlot<T> {
    fn default() -> Self {
        OnceSlot::new()
    }
}

impl<T> Drop for OnceSlot<T> {
    fn drop(&mut self) {
        if self.state.load(Acquire) == READY {
            // SAFETY: READY means initialised; `&mut self` means no reader is left.
            self.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

#[cfg(all(test, not(conclab_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_set_wins_and_value_is_dropped_once() {
        let counted = Arc::new(());
        let slot = OnceSlot::new();
        assert!(slot.get().is_none());
        slot.set(counted.clone()).unwrap();
        assert!(slot.set(counted.clone()).is_err());
        assert!(slot.is_set());
        assert_eq!(Arc::strong_count(&counted), 2);
        drop(slot);
        assert_eq!(Arc::strong_count(&counted), 1);
    }

    #[test]
    fn readers_see_the_whole_value() {
        let slot = OnceSlot::new();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    loop {
                        if let Some(v) = slot.get() {
                            assert_eq!(v, &vec![7u8; 1000]);
                            break;
                        }
                        std::hint::spin_loop();
                    }
                });
            }
            s.spawn(|| slot.set(vec![7u8; 1000]).unwrap());
        });
    }
}

#[cfg(all(test, conclab_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn a_reader_sees_nothing_or_the_whole_value() {
        crate::primitives::sync::loom_model().check(|| {
            let slot = Arc::new(OnceSlot::new());
            let writer = slot.clone();
            let t = loom::thread::spawn(move || writer.set(42u32).unwrap());
            if let Some(v) = slot.get() {
                assert_eq!(*v, 42);
            }
            t.join().unwrap();
            assert_eq!(slot.get(), Some(&42));
        });
    }

    #[test]
    fn exactly_one_of_two_writers_wins() {
        crate::primitives::sync::loom_model().check(|| {
            let slot = Arc::new(OnceSlot::new());
            let other = slot.clone();
            let t = loom::thread::spawn(move || other.set(1u32).is_ok());
            let mine = slot.set(2u32).is_ok();
            let theirs = t.join().unwrap();
            assert!(mine ^ theirs);
            assert_eq!(*slot.get().unwrap(), if mine { 2 } else { 1 });
        });
    }

    /// The message-passing flag with Relaxed on both sides: a reader may see the flag
    /// and not the data. x86 never shows it (its stores stay in order); loom does.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn relaxed_flag_is_caught() {
        struct Shared {
            data: UnsafeCell<u32>,
            flag: AtomicU8,
        }
        // SAFETY: deliberately wrong (Relaxed flag); only ever run under loom, which must object.
        unsafe impl Sync for Shared {}
        crate::primitives::sync::loom_model().check(|| {
            let s = Arc::new(Shared { data: UnsafeCell::new(0), flag: AtomicU8::new(0) });
            let w = s.clone();
            let t = loom::thread::spawn(move || {
                // SAFETY: deliberately unsynchronised; loom must report it.
                w.data.with_mut(|p| unsafe { *p = 42 });
                w.flag.store(1, Relaxed);
            });
            if s.flag.load(Relaxed) == 1 {
                // SAFETY: as above.
                let v = s.data.with(|p| unsafe { *p });
                assert_eq!(v, 42);
            }
            t.join().unwrap();
        });
    }
}
