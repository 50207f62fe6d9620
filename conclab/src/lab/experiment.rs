//! The generic part of an experiment's entry in the lab: its name, notebook, defaults, and
//! how `key=value` strings (the CLI's `--param`, a harness) become a validated parameter
//! struct. The list of experiments lives in [`crate::experiments`]; this module knows none
//! of them.

use crate::lab::error::{LabError, ParamError};
use crate::lab::report::Report;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A parameter struct: defaults, a serde form (the CLI's `--param` and the JSON output),
/// and one validation that runs before anything starts.
pub trait Params: Default + Serialize + DeserializeOwned + 'static {
    /// Checks every parameter; the error names the parameter and what it allows.
    fn validate(&self) -> Result<(), ParamError>;
}

/// Implements [`Params`] for parameter structs that have an inherent
/// `validate(&self) -> Result<(), ParamError>`: `conclab::impl_params!(SpawnCost, Scaling);`.
#[macro_export]
macro_rules! impl_params {
    ($($t:ty),+ $(,)?) => {
        $(impl $crate::lab::Params for $t {
            fn validate(&self) -> Result<(), $crate::lab::ParamError> {
                <$t>::validate(self)
            }
        })+
    };
}

type Runner = Box<dyn Fn(&[(String, String)]) -> Result<Box<dyn Report>, LabError> + Send + Sync>;
type Checker = Box<dyn Fn(&[(String, String)]) -> Result<(), ParamError> + Send + Sync>;
type Describer = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A runnable experiment: its name on the command line, the notebook that teaches it,
/// a one-line description, and its parameters' defaults.
pub struct Experiment {
    pub name: &'static str,
    pub notebook: &'static str,
    pub about: &'static str,
    defaults: Value,
    run: Runner,
    check: Checker,
    describe: Describer,
}

impl Experiment {
    /// Describes an experiment: `f` is its function, `P` its parameter struct.
    pub fn new<P, R>(
        name: &'static str,
        notebook: &'static str,
        about: &'static str,
        f: fn(&P) -> Result<R, LabError>,
    ) -> Experiment
    where
        P: Params,
        R: Report + 'static,
    {
        Experiment {
            name,
            notebook,
            about,
            defaults: serde_json::to_value(P::default()).expect("parameter structs serialise"),
            run: Box::new(move |pairs| {
                let p: P = params_from_pairs(name, pairs)?;
                p.validate()?;
                f(&p).map(|r| Box::new(r) as Box<dyn Report>)
            }),
            check: Box::new(move |pairs| params_from_pairs::<P>(name, pairs)?.validate()),
            describe: Box::new(|key| allowed::<P>(key)),
        }
    }

    /// The default parameters as a JSON object (what `conclab list` prints).
    pub fn defaults(&self) -> &Value {
        &self.defaults
    }

    /// The parameter names, in alphabetical order.
    pub fn param_names(&self) -> Vec<String> {
        self.defaults.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// What parameter `key` allows (`1..=101`, `a list of …`), found by asking the
    /// experiment's own validation about values outside it; `None` for unknown keys.
    pub fn allowed(&self, key: &str) -> Option<String> {
        (self.describe)(key)
    }

    /// Parses and validates `key=value` overrides without running anything.
    pub fn check(&self, pairs: &[(String, String)]) -> Result<(), ParamError> {
        (self.check)(pairs)
    }

    /// Runs the experiment with `key=value` overrides of its defaults; the parameters are
    /// validated before anything starts.
    pub fn run(&self, pairs: &[(String, String)]) -> Result<Box<dyn Report>, LabError> {
        (self.run)(pairs)
    }
}

/// Builds `P` from its defaults with `key=value` overrides. A value is read as a number
/// when it is one (`8`, `03`, `1_000`, `2.5`), as JSON when it parses (`true`, `[1,2]`),
/// else as a string; for list parameters `1,2,4` works too. A value of the wrong type is
/// refused with what the parameter allows (its range or choices), not only its type.
pub fn params_from_pairs<P: Params>(experiment: &str, pairs: &[(String, String)]) -> Result<P, ParamError> {
    let mut obj = serde_json::to_value(P::default()).expect("parameter structs serialise");
    let keys: Vec<String> = obj.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for (k, v) in pairs {
        let Some(slot) = obj.get_mut(k) else {
            let name = if k.is_empty() { "(empty name)" } else { k.as_str() };
            return Err(ParamError {
                param: name.to_string(),
                allowed: format!("a parameter of {experiment}: one of {}", keys.join(", ")),
                got: format!("{name:?} (no such parameter)"),
            });
        };
        *slot = match slot {
            Value::Array(_) if !v.trim_start().starts_with('[') => {
                if v.trim().is_empty() {
                    Value::Array(Vec::new())
                } else {
                    Value::Array(v.split(',').map(|s| scalar(s.trim())).collect())
                }
            }
            Value::String(_) => Value::String(v.clone()),
            _ => scalar(v),
        };
        if let Err(e) = serde_json::from_value::<P>(obj.clone()) {
            let serde = e.to_string();
            let allowed =
                allowed::<P>(k).unwrap_or_else(|| serde.split("expected ").nth(1).unwrap_or(&serde).to_string());
            return Err(ParamError { param: k.clone(), allowed, got: format!("{v:?} ({})", short(&serde)) });
        }
    }
    Ok(serde_json::from_value(obj).expect("checked after every override"))
}

/// serde's message without its position suffix, e.g. `invalid value: integer -1, expected usize`.
fn short(serde: &str) -> String {
    serde.split(" at line ").next().unwrap_or(serde).replace('`', "")
}

/// What `key` allows, asked of `P::validate` with values outside any sensible range; for
/// choices, serde's own list of the allowed spellings.
fn allowed<P: Params>(key: &str) -> Option<String> {
    let base = serde_json::to_value(P::default()).ok()?;
    let default = base.get(key)?.clone();
    let numbers: Vec<Value> = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1_000_000_000_000_000u64),
        serde_json::json!(4_000_000_000u64),
        serde_json::json!(100_000),
        serde_json::json!(1e18),
    ]
    .into_iter()
    .collect();
    let probes: Vec<Value> = match &default {
        Value::Array(items) => {
            let mut p = vec![Value::Array(Vec::new())];
            match items.first() {
                Some(Value::String(_)) | None => p.push(serde_json::json!(["?"])),
                _ => p.extend(numbers.iter().map(|n| Value::Array(vec![n.clone()]))),
            }
            p
        }
        Value::Number(_) => numbers,
        Value::String(_) => vec![serde_json::json!("?")],
        Value::Bool(_) => return Some("true or false".into()),
        _ => vec![],
    };
    for probe in probes {
        let mut obj = base.clone();
        obj[key] = probe;
        match serde_json::from_value::<P>(obj) {
            Ok(p) => {
                if let Err(e) = p.validate()
                    && e.param == key
                {
                    return Some(e.allowed);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("unknown variant")
                    && let Some(list) = msg.split("expected ").nth(1)
                {
                    let list = short(list.trim_start_matches("one of ")).replace(" or ", ", ");
                    return Some(if default.is_array() {
                        format!("a non-empty list of distinct values from: {list}")
                    } else {
                        format!("one of {list}")
                    });
                }
            }
        }
    }
    None
}

fn scalar(s: &str) -> Value {
    let plain = s.replace('_', "");
    let numeric = !plain.is_empty() && plain.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    if numeric {
        if let Ok(i) = plain.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = plain.parse::<u64>() {
            return Value::from(u);
        }
        if let Ok(f) = plain.parse::<f64>()
            && f.is_finite()
        {
            return Value::from(f);
        }
    }
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{Figure, Table, check_list, check_range};
    use serde::Deserialize;

    crate::choices! {
        enum Kind { Fast = "fast", Slow = "slow" }
    }

    /// A dummy experiment: the generic machinery is tested without any real one.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Dummy {
        counts: Vec<usize>,
        samples: usize,
        ratio: f64,
        kinds: Vec<Kind>,
        kind: Kind,
    }

    impl Default for Dummy {
        fn default() -> Self {
            Dummy { counts: vec![1, 8], samples: 5, ratio: 0.5, kinds: vec![Kind::Fast], kind: Kind::Slow }
        }
    }

    impl Params for Dummy {
        fn validate(&self) -> Result<(), ParamError> {
            check_list("counts", &self.counts, 4, 1..=64)?;
            check_range("samples", self.samples, 1..=101)?;
            check_range("ratio", self.ratio, 0.0..=1.0)?;
            crate::lab::check_choices("kinds", &self.kinds)
        }
    }

    #[derive(Serialize)]
    struct DummyReport(usize);
    impl Report for DummyReport {
        fn figures(&self) -> Vec<Figure> {
            vec![Figure::lines("t", "x", "y")]
        }
        fn table(&self) -> Table {
            Table::new("t", &["n"])
        }
    }

    fn dummy(p: &Dummy) -> Result<DummyReport, LabError> {
        Ok(DummyReport(p.samples))
    }

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn err(kv: &[(&str, &str)]) -> String {
        params_from_pairs::<Dummy>("dummy", &pairs(kv)).unwrap_err().to_string()
    }

    #[test]
    fn overrides_apply_on_defaults() {
        let p: Dummy = params_from_pairs("x", &pairs(&[("counts", "1,8,16"), ("samples", "03")])).unwrap();
        assert_eq!((p.counts, p.samples), (vec![1, 8, 16], 3));
        let p: Dummy = params_from_pairs("x", &pairs(&[("counts", "[2, 4]"), ("samples", "1_000")])).unwrap();
        assert_eq!((p.counts, p.samples), (vec![2, 4], 1000));
        let p: Dummy =
            params_from_pairs("x", &pairs(&[("kinds", "slow,fast"), ("kind", "fast"), ("ratio", "1")])).unwrap();
        assert_eq!((p.kinds, p.kind, p.ratio), (vec![Kind::Slow, Kind::Fast], Kind::Fast, 1.0));
    }

    #[test]
    fn wrong_types_name_the_range_not_only_the_type() {
        assert!(
            err(&[("samples", "-1")]).starts_with("samples must be 1..=101, got \"-1\""),
            "{}",
            err(&[("samples", "-1")])
        );
        assert!(err(&[("samples", "many")]).contains("1..=101"));
        assert!(err(&[("samples", "2.5")]).contains("1..=101"));
        assert!(err(&[("counts", "1,x")]).contains("each in 1..=64"), "{}", err(&[("counts", "1,x")]));
        assert!(err(&[("kinds", "fast,medium")]).contains("fast, slow"), "{}", err(&[("kinds", "fast,medium")]));
        assert!(err(&[("kind", "medium")]).contains("one of fast, slow"), "{}", err(&[("kind", "medium")]));
    }

    #[test]
    fn unknown_and_empty_names_are_named() {
        let e = err(&[("sample", "1")]);
        assert!(
            e.starts_with("sample must be a parameter of dummy: one of counts, kind, kinds, ratio, samples"),
            "{e}"
        );
        assert!(e.contains("\"sample\""), "{e}");
        assert!(err(&[("", "3")]).contains("(empty name)"));
    }

    #[test]
    fn allowed_comes_from_validation() {
        let e = Experiment::new("dummy", "00", "a dummy", dummy);
        assert_eq!(e.allowed("samples").as_deref(), Some("1..=101"));
        assert_eq!(e.allowed("ratio").as_deref(), Some("0.0..=1.0"));
        assert!(e.allowed("counts").unwrap().contains("1..=64"));
        assert!(e.allowed("kinds").unwrap().contains("fast, slow"));
        assert!(e.allowed("kind").unwrap().contains("fast"));
        assert_eq!(e.allowed("nope"), None);
        assert_eq!(e.param_names(), vec!["counts", "kind", "kinds", "ratio", "samples"]);
    }

    #[test]
    fn run_validates_before_the_function() {
        let e = Experiment::new("dummy", "00", "a dummy", dummy);
        let out = e.run(&pairs(&[("samples", "0")])).err().unwrap();
        assert_eq!(out.to_string(), "samples must be 1..=101, got 0");
        assert!(e.check(&pairs(&[("counts", "2,2")])).unwrap_err().to_string().contains("distinct"));
        assert!(e.run(&pairs(&[("samples", "7")])).is_ok());
    }
}
