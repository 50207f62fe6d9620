//! Parameter errors: what an experiment returns instead of starting work it cannot do.

use std::fmt;
use std::ops::RangeInclusive;

/// A parameter an experiment refused, with the range or rule it allows.
///
/// Displayed as `threads must be 1..=512, got 0`; in a notebook it renders as a
/// visible red box (never only on stderr, which evcxr can drop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// Name of the parameter, as written in the parameter struct and on the CLI.
    pub param: String,
    /// What is allowed, e.g. `1..=512` or `one of: mutex, atomic`.
    pub allowed: String,
    /// The value that was given, formatted.
    pub got: String,
}

impl ParamError {
    /// A new error for `param`, saying what is `allowed` and what was `got`.
    pub fn new(param: impl Into<String>, allowed: impl Into<String>, got: impl fmt::Debug) -> Self {
        ParamError { param: param.into(), allowed: allowed.into(), got: format!("{got:?}") }
    }

    /// An experiment that could not run on this machine although its parameters were
    /// valid (a thread the OS refused, a wait that timed out): `what` failed because `why`.
    pub fn failed(what: impl Into<String>, why: impl fmt::Display) -> Self {
        ParamError { param: what.into(), allowed: String::new(), got: why.to_string() }
    }

    /// Whether this reports a failure to run rather than a refused value.
    pub fn is_failure(&self) -> bool {
        self.allowed.is_empty()
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_failure() {
            write!(f, "{} failed: {}", self.param, self.got)
        } else {
            write!(f, "{} must be {}, got {}", self.param, self.allowed, self.got)
        }
    }
}

impl std::error::Error for ParamError {}

/// Checks that `value` lies in `range`; the error names the range.
///
/// ```
/// use conclab::lab::check_range;
/// assert!(check_range("threads", 0, 1..=512).is_err());
/// assert!(check_range("threads", 4, 1..=512).is_ok());
/// ```
pub fn check_range<T>(param: &str, value: T, range: RangeInclusive<T>) -> Result<(), ParamError>
where
    T: PartialOrd + fmt::Debug,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ParamError::new(param, format!("{:?}..={:?}", range.start(), range.end()), value))
    }
}

/// Checks that a list is not empty, not longer than `max_len`, and that every element
/// lies in `range`.
pub fn check_list<T>(param: &str, values: &[T], max_len: usize, range: RangeInclusive<T>) -> Result<(), ParamError>
where
    T: PartialOrd + fmt::Debug,
{
    if values.is_empty() || values.len() > max_len {
        return Err(ParamError::new(
            param,
            format!("a list of 1..={max_len} values, each in {:?}..={:?}", range.start(), range.end()),
            values,
        ));
    }
    for v in values {
        if !range.contains(v) {
            return Err(ParamError::new(
                param,
                format!("a list with every value in {:?}..={:?}", range.start(), range.end()),
                values,
            ));
        }
    }
    Ok(())
}

/// Checks that `cpu` names a logical CPU this process may run on, and that the OS lets
/// a thread pin itself there (a short-lived probe thread tries it).
pub fn check_cpu(param: &str, cpu: usize) -> Result<(), ParamError> {
    let ids = crate::lab::machine::usable_cpus();
    if !ids.contains(&cpu) {
        return Err(ParamError::new(param, format!("a CPU id this process may use ({})", id_ranges(&ids)), cpu));
    }
    let pinned = std::thread::Builder::new()
        .name("conclab-pin-probe".into())
        .spawn(move || crate::lab::machine::pin_current_thread(cpu))
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or(false);
    if pinned {
        Ok(())
    } else {
        Err(ParamError::new(param, "a CPU this OS lets a thread pin itself to (sched_setaffinity refused)", cpu))
    }
}

/// `[0, 1, 2, 3, 8]` as `0-3, 8`.
pub fn id_ranges(ids: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", ids[i], ids[j]) } else { ids[i].to_string() });
        i = j + 1;
    }
    parts.join(", ")
}

/// Checks that `value` is one of `choices`.
pub fn check_choice(param: &str, value: &str, choices: &[&str]) -> Result<(), ParamError> {
    if choices.contains(&value) {
        Ok(())
    } else {
        Err(ParamError::new(param, format!("one of: {}", choices.join(", ")), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_error_names_the_range_and_the_value() {
        let e = check_range("threads", 0usize, 1..=512).unwrap_err();
        assert_eq!(e.to_string(), "threads must be 1..=512, got 0");
    }

    #[test]
    fn list_errors_on_empty_and_out_of_range() {
        assert!(check_list::<u32>("counts", &[], 8, 1..=10).is_err());
        let e = check_list("counts", &[1u32, 11], 8, 1..=10).unwrap_err();
        assert!(e.to_string().contains("1..=10"), "{e}");
        assert!(check_list("counts", &[1u32, 10], 8, 1..=10).is_ok());
        assert!(check_list("counts", &[1u32; 9], 8, 1..=10).is_err());
    }

    #[test]
    fn cpu_out_of_range_is_refused() {
        assert!(check_cpu("cpu", 1_000_000).is_err());
        let first = crate::lab::machine::usable_cpus()[0];
        assert!(check_cpu("cpu", first).is_ok());
    }

    #[test]
    fn ranges_are_compact_and_failures_read_as_failures() {
        assert_eq!(id_ranges(&[0, 1, 2, 3, 8, 10, 11]), "0-3, 8, 10-11");
        assert_eq!(ParamError::failed("ping-pong", "timed out").to_string(), "ping-pong failed: timed out");
    }

    #[test]
    fn choice_lists_the_choices() {
        let e = check_choice("mode", "x", &["a", "b"]).unwrap_err();
        assert_eq!(e.to_string(), "mode must be one of: a, b, got \"x\"");
    }
}
