//! The one list of experiments that both the notebooks' text and the CLI use.
//!
//! The CLI sets parameters as `key=value` strings; they are applied on top of the
//! parameter struct's `Default` through its serde form, so every experiment gets
//! `--param` support, defaults listing and unknown-key errors without code of its own.

use crate::lab::{ParamError, Report};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

type Runner = Box<dyn Fn(&[(String, String)]) -> Result<Box<dyn Report>, ParamError> + Send + Sync>;

/// A runnable experiment: its name on the command line, the notebook that teaches it,
/// a one-line description, and its parameters' defaults.
pub struct Experiment {
    pub name: &'static str,
    pub notebook: &'static str,
    pub about: &'static str,
    defaults: Value,
    run: Runner,
}

impl Experiment {
    /// Describes an experiment: `f` is its function, `P` its parameter struct.
    pub fn new<P, R>(
        name: &'static str,
        notebook: &'static str,
        about: &'static str,
        f: fn(&P) -> Result<R, ParamError>,
    ) -> Experiment
    where
        P: Default + Serialize + DeserializeOwned + 'static,
        R: Report + 'static,
    {
        Experiment {
            name,
            notebook,
            about,
            defaults: serde_json::to_value(P::default()).expect("parameter structs serialise"),
            run: Box::new(move |pairs| {
                let p: P = params_from_pairs(name, pairs)?;
                f(&p).map(|r| Box::new(r) as Box<dyn Report>)
            }),
        }
    }

    /// The default parameters as a JSON object (what `conclab list` prints).
    pub fn defaults(&self) -> &Value {
        &self.defaults
    }

    /// Runs the experiment with `key=value` overrides of its defaults.
    pub fn run(&self, pairs: &[(String, String)]) -> Result<Box<dyn Report>, ParamError> {
        (self.run)(pairs)
    }
}

/// Every experiment compiled in (one cargo feature per notebook), in notebook order.
#[allow(unused_mut)]
pub fn experiments() -> Vec<Experiment> {
    let mut all = Vec::new();
    #[cfg(feature = "index")]
    all.extend(crate::experiments::index::experiments());
    #[cfg(feature = "intro")]
    all.extend(crate::experiments::intro::experiments());
    #[cfg(feature = "features")]
    all.extend(crate::experiments::features::experiments());
    #[cfg(feature = "threads")]
    all.extend(crate::experiments::threads::experiments());
    all
}

/// The experiment called `name`.
pub fn find(name: &str) -> Option<Experiment> {
    experiments().into_iter().find(|e| e.name == name)
}

/// Builds `P` from its defaults with `key=value` overrides. A value is read as JSON when
/// it parses (`8`, `true`, `[1,2]`), else as a string; for list parameters `1,2,4` works too.
pub fn params_from_pairs<P>(experiment: &str, pairs: &[(String, String)]) -> Result<P, ParamError>
where
    P: Default + Serialize + DeserializeOwned,
{
    let mut obj = serde_json::to_value(P::default()).expect("parameter structs serialise");
    let keys: Vec<String> = obj.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for (k, v) in pairs {
        let Some(slot) = obj.get_mut(k) else {
            return Err(ParamError::new(k, format!("a parameter of {experiment} ({})", keys.join(", ")), "unknown"));
        };
        *slot = match slot {
            Value::Array(_) if !v.trim_start().starts_with('[') => {
                Value::Array(v.split(',').map(|s| scalar(s.trim())).collect())
            }
            Value::String(_) => Value::String(v.clone()),
            _ => scalar(v),
        };
        if let Err(e) = serde_json::from_value::<P>(obj.clone()) {
            let kind = e.to_string();
            let wanted = kind.split("expected ").nth(1).unwrap_or(&kind).to_string();
            return Err(ParamError::new(k, wanted, v));
        }
    }
    Ok(serde_json::from_value(obj).expect("checked after every override"))
}

fn scalar(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

#[cfg(all(test, feature = "index"))]
mod tests {
    use super::*;
    use crate::experiments::index::SpawnCost;

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_apply_on_defaults() {
        let p: SpawnCost = params_from_pairs("x", &pairs(&[("counts", "1,8"), ("samples", "3")])).unwrap();
        assert_eq!(p.counts, vec![1, 8]);
        assert_eq!(p.samples, 3);
        assert_eq!(p.workers, SpawnCost::default().workers);
        let p: SpawnCost = params_from_pairs("x", &pairs(&[("counts", "[2, 4]")])).unwrap();
        assert_eq!(p.counts, vec![2, 4]);
    }

    #[test]
    fn unknown_key_lists_the_known_ones() {
        let e = params_from_pairs::<SpawnCost>("spawn-cost", &pairs(&[("thread", "1")])).unwrap_err();
        assert!(e.to_string().contains("counts, samples, workers"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = params_from_pairs::<SpawnCost>("spawn-cost", &pairs(&[("samples", "many")])).unwrap_err();
        assert_eq!(e.param, "samples");
    }

    #[test]
    fn names_are_unique_and_found() {
        let all = experiments();
        for e in &all {
            assert_eq!(all.iter().filter(|o| o.name == e.name).count(), 1);
            assert!(find(e.name).is_some());
            assert!(e.defaults().is_object());
        }
    }

    #[test]
    fn registry_runs_validation() {
        let e = find("spawn-cost").unwrap();
        let err = e.run(&pairs(&[("counts", "0")])).err().unwrap();
        assert!(err.to_string().starts_with("counts must be"), "{err}");
    }
}
