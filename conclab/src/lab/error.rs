//! What an experiment returns instead of a report: a [`ParamError`] (a value outside what
//! is allowed, found before anything starts) or a [`RunError`] (valid parameters, but the
//! run failed: the OS refused a thread, a wait timed out). [`LabError`] holds either.

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
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}, got {}", self.param, self.allowed, self.got)
    }
}

impl std::error::Error for ParamError {}

/// A run that failed although its parameters were valid: what failed, and why (the OS
/// error, the timeout, what was measured before it stopped).
///
/// Displayed as `starting thread 45 of 64 failed: Resource temporarily unavailable (os error 11)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    /// What was being done, e.g. `starting thread 45 of 64` or `litmus (seq_cst, run 3)`.
    pub what: String,
    /// Why it failed: the OS error or the limit that was hit.
    pub cause: String,
}

impl RunError {
    /// `what` failed because of `cause`.
    pub fn new(what: impl Into<String>, cause: impl fmt::Display) -> Self {
        RunError { what: what.into(), cause: cause.to_string() }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, self.cause)
    }
}

impl std::error::Error for RunError {}

/// Why an experiment returned no report: a refused parameter or a failed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabError {
    /// A value outside what the experiment allows; nothing was started.
    Param(ParamError),
    /// Valid parameters, but the run failed.
    Run(RunError),
}

impl LabError {
    /// The parameter error, if this is one.
    pub fn param(&self) -> Option<&ParamError> {
        match self {
            LabError::Param(e) => Some(e),
            LabError::Run(_) => None,
        }
    }

    /// The run failure, if this is one.
    pub fn run(&self) -> Option<&RunError> {
        match self {
            LabError::Run(e) => Some(e),
            LabError::Param(_) => None,
        }
    }
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Param(e) => e.fmt(f),
            LabError::Run(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LabError {}

impl From<ParamError> for LabError {
    fn from(e: ParamError) -> Self {
        LabError::Param(e)
    }
}

#[cfg(feature = "rt")]
impl From<crate::lab::rt::RtError> for LabError {
    /// A timed-out, panicked or leaking async body is a failed run.
    fn from(e: crate::lab::rt::RtError) -> Self {
        LabError::Run(RunError::new("the async body", e))
    }
}

impl From<RunError> for LabError {
    fn from(e: RunError) -> Self {
        LabError::Run(e)
    }
}

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

/// Checks that a list is not empty, not longer than `max_len`, that every element lies in
/// `range`, and that no value repeats (a repeated value would measure the same point
/// twice; lists are refused, never silently de-duplicated).
pub fn check_list<T>(param: &str, values: &[T], max_len: usize, range: RangeInclusive<T>) -> Result<(), ParamError>
where
    T: PartialOrd + fmt::Debug,
{
    let allowed = format!("a list of 1..={max_len} distinct values, each in {:?}..={:?}", range.start(), range.end());
    let repeats = values.iter().enumerate().any(|(i, v)| values[..i].contains(v));
    if values.is_empty() || values.len() > max_len || repeats || values.iter().any(|v| !range.contains(v)) {
        return Err(ParamError::new(param, allowed, values));
    }
    Ok(())
}

/// A closed set of named values a parameter can take (a lock kind, a queue kind): a
/// serde enum whose spellings are the names. Declare one with [`crate::choices!`].
pub trait Choice: Copy + PartialEq + fmt::Debug + 'static {
    /// Every value, in the order figures and tables show them.
    fn all() -> &'static [Self];
    /// The spelling a cell or the CLI uses.
    fn name(self) -> &'static str;
    /// `a, b, c`: the spellings, for error messages.
    fn names() -> String {
        Self::all().iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
    }
}

/// Checks that a list of choices is non-empty and has no repeats; the error lists the
/// allowed spellings.
pub fn check_choices<T: Choice>(param: &str, values: &[T]) -> Result<(), ParamError> {
    let repeats = values.iter().enumerate().any(|(i, v)| values[..i].contains(v));
    if values.is_empty() || repeats {
        let got: Vec<&str> = values.iter().map(|v| v.name()).collect();
        return Err(ParamError::new(param, format!("a non-empty list of distinct values from: {}", T::names()), got));
    }
    Ok(())
}

/// Declares a [`Choice`] enum: `choices! { pub enum Lock { Spin = "spin", Std = "std" } }`
/// gives the enum (serde spellings as written), `ALL`, `name()` and `Display`.
#[macro_export]
macro_rules! choices {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $var),+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The spelling cells and the CLI use.
            pub fn name(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }
        impl $crate::lab::Choice for $name {
            fn all() -> &'static [Self] { $name::ALL }
            fn name(self) -> &'static str { $name::name(self) }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.name()) }
        }
    };
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
        let e = check_list("counts", &[1u32, 1], 8, 1..=10).unwrap_err();
        assert!(e.to_string().contains("distinct"), "{e}");
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
        assert_eq!(RunError::new("ping-pong", "timed out").to_string(), "ping-pong failed: timed out");
        let e: LabError = RunError::new("x", "y").into();
        assert!(e.run().is_some() && e.param().is_none());
    }

    crate::choices! {
        enum Fruit { Apple = "apple", Pear = "pear" }
    }

    #[test]
    fn choices_parse_by_name_and_refuse_repeats() {
        let f: Vec<Fruit> = serde_json::from_str(r#"["pear","apple"]"#).unwrap();
        assert_eq!(f, vec![Fruit::Pear, Fruit::Apple]);
        let bad = serde_json::from_str::<Vec<Fruit>>(r#"["plum"]"#).unwrap_err().to_string();
        assert!(bad.contains("apple") && bad.contains("pear"), "{bad}");
        assert!(check_choices("fruit", &[Fruit::Apple]).is_ok());
        let e = check_choices("fruit", &[Fruit::Apple, Fruit::Apple]).unwrap_err();
        assert!(e.to_string().contains("apple, pear"), "{e}");
        assert!(check_choices::<Fruit>("fruit", &[]).is_err());
    }
}
