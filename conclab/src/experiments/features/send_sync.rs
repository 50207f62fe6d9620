//! `Send` and `Sync`, as the compiler decides them: a table built from trait-bound
//! probes, so no answer in it is typed by hand.

use crate::lab::Table;
use std::marker::PhantomData;

/// A zero-sized probe for type `T`. `Probe::<T>::new().is_send()` calls the inherent
/// method (answering `true`) only when `T: Send`; otherwise method resolution falls back
/// to the [`NotSend`] trait's method, which answers `false`. The decision is made by the
/// compiler at the call site, for the concrete type written there.
pub struct Probe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> Probe<T> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T: ?Sized + Send> Probe<T> {
    /// `true`: this impl only exists for `T: Send`.
    pub fn is_send(&self) -> bool {
        true
    }
}

impl<T: ?Sized + Sync> Probe<T> {
    /// `true`: this impl only exists for `T: Sync`.
    pub fn is_sync(&self) -> bool {
        true
    }
}

/// Fallback answer for types that are not `Send`.
pub trait NotSend {
    fn is_send(&self) -> bool {
        false
    }
}
impl<T: ?Sized> NotSend for Probe<T> {}

/// Fallback answer for types that are not `Sync`.
pub trait NotSync {
    fn is_sync(&self) -> bool {
        false
    }
}
impl<T: ?Sized> NotSync for Probe<T> {}

/// Rows of (type, is Send, is Sync), with what each combination means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendSyncTable {
    pub rows: Vec<(String, bool, bool)>,
}

impl SendSyncTable {
    pub fn new(rows: Vec<(String, bool, bool)>) -> Self {
        SendSyncTable { rows }
    }

    /// Whether `ty` (as written in the macro call) is `Send` and `Sync`.
    pub fn get(&self, ty: &str) -> Option<(bool, bool)> {
        self.rows.iter().find(|r| r.0.replace(' ', "") == ty.replace(' ', "")).map(|r| (r.1, r.2))
    }

    pub fn table(&self) -> Table {
        let mark = |b: bool| if b { "✔ yes" } else { "✘ no" }.to_string();
        let mut t = Table::new("Send and Sync, as decided by the compiler", &["type", "Send", "Sync", "what it means"]);
        for (ty, send, sync) in &self.rows {
            let meaning = match (send, sync) {
                (true, true) => "may move to another thread, and be shared by reference across threads",
                (true, false) => "may move to another thread, but a &-reference must stay on one thread",
                (false, true) => "must stay on the thread that made it; &-references may be shared",
                (false, false) => "confined to one thread entirely",
            };
            t.row(vec![ty.clone(), mark(*send), mark(*sync), meaning.into()]);
        }
        t.note("T: Sync exactly when &T: Send. Each answer comes from a trait-bound probe compiled for that type.");
        t
    }

    pub fn evcxr_display(&self) {
        self.table().evcxr_display()
    }
}

impl crate::lab::Rich for SendSyncTable {
    fn evcxr_display(&self) {
        SendSyncTable::evcxr_display(self)
    }
}

/// Builds a [`SendSyncTable`] for the listed types; the compiler answers for each one.
///
/// ```
/// use std::rc::Rc;
/// let t = conclab::send_sync_table!(i32, Rc<i32>, std::cell::Cell<u8>);
/// assert_eq!(t.get("i32"), Some((true, true)));
/// assert_eq!(t.get("Rc<i32>"), Some((false, false)));
/// assert_eq!(t.get("std::cell::Cell<u8>"), Some((true, false)));
/// ```
#[macro_export]
macro_rules! send_sync_table {
    ($($t:ty),+ $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::experiments::features::send_sync::{NotSend as _, NotSync as _, Probe};
        $crate::experiments::features::send_sync::SendSyncTable::new(vec![$(
            (
                stringify!($t).to_string(),
                Probe::<$t>::new().is_send(),
                Probe::<$t>::new().is_sync(),
            )
        ),+])
    }};
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex, MutexGuard, RwLock};

    #[test]
    fn probes_agree_with_the_standard_library() {
        let t = crate::send_sync_table!(
            i32,
            String,
            Rc<i32>,
            Arc<i32>,
            Cell<i32>,
            RefCell<i32>,
            Mutex<i32>,
            RwLock<i32>,
            MutexGuard<'static, i32>,
            AtomicU64,
            *const i32,
            Arc<RefCell<i32>>,
            Arc<Mutex<i32>>,
        );
        let want = [
            ("i32", true, true),
            ("String", true, true),
            ("Rc<i32>", false, false),
            ("Arc<i32>", true, true),
            ("Cell<i32>", true, false),
            ("RefCell<i32>", true, false),
            ("Mutex<i32>", true, true),
            ("RwLock<i32>", true, true),
            ("MutexGuard<'static, i32>", false, true),
            ("AtomicU64", true, true),
            ("*const i32", false, false),
            ("Arc<RefCell<i32>>", false, false),
            ("Arc<Mutex<i32>>", true, true),
        ];
        for (ty, send, sync) in want {
            assert_eq!(t.get(ty), Some((send, sync)), "{ty}");
        }
        assert_eq!(t.table().rows.len(), 13);
    }
}
