//! Panics a lesson provokes on purpose, reported in one line.
//!
//! evcxr starts the process that runs cells with `RUST_BACKTRACE=1` (it sets the variable
//! itself, so a kernel spec cannot turn it off), and the default panic hook then prints a
//! full backtrace for every panic — dozens of lines for a panic the text announced.

use std::panic::{self, AssertUnwindSafe};

/// Runs `f` with a panic hook that prints one line per panic —
/// `thread 'doomed' panicked at src/lib.rs:3:5: the worker failed` — on stderr, then puts
/// the previous hook back (also when `f` itself panics, which is then resumed).
///
/// ```
/// use conclab::lab::one_line_panics;
/// let joined = one_line_panics(|| std::thread::spawn(|| -> u32 { panic!("on purpose") }).join());
/// assert!(joined.is_err());
/// ```
pub fn one_line_panics<T>(f: impl FnOnce() -> T) -> T {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a payload that is not text)");
        let thread = std::thread::current();
        let at = info.location().map_or_else(|| "an unknown place".to_string(), |l| l.to_string());
        eprintln!("thread '{}' panicked at {at}: {msg}", thread.name().unwrap_or("<unnamed>"));
    }));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    out.unwrap_or_else(|p| panic::resume_unwind(p))
}

/// The text of a caught panic's payload (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}
