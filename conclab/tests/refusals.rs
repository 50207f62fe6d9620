//! Every parameter of every experiment, given a value outside what it allows (0, −1,
//! max+1, a huge number, a wrong type) or an unknown name, is refused by the CLI before
//! anything runs: exit status 2 and a message that names the parameter and what it allows.

use conclab::experiments::experiments;
use std::process::Command;

/// The upper end of the first `a..=b` in an allowed-range text.
fn max_of(allowed: &str) -> Option<i128> {
    let (_, rest) = allowed.split_once("..=")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '_').filter(|c| *c != '_').collect();
    digits.parse().ok()
}

fn min_of(allowed: &str) -> Option<i128> {
    let (head, _) = allowed.split_once("..=")?;
    let digits: String = head.chars().rev().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

#[test]
fn bad_values_and_names_are_refused_with_the_range() {
    let bin = env!("CARGO_BIN_EXE_conclab");
    let mut tried = 0;
    for e in experiments() {
        for k in e.param_names() {
            let allowed = e.allowed(&k).unwrap_or_else(|| panic!("{}: {k} has no discoverable range", e.name));
            let numeric = e.defaults()[&k].is_number() || e.defaults()[&k].get(0).is_some_and(|v| v.is_number());
            let mut values: Vec<String> = vec!["-1".into(), "1e30".into(), "notanumber".into()];
            if !numeric {
                values = vec!["-1".into(), "notachoice".into(), String::new()];
            }
            let range = allowed.split("each in ").last().unwrap_or(&allowed);
            if let (Some(lo), Some(hi)) = (min_of(range), max_of(range)) {
                values.push((hi + 1).to_string());
                if lo > 0 {
                    values.push("0".into());
                }
            }
            for v in values {
                let pair = vec![(k.clone(), v.clone())];
                // In-process first: a value that passes would start a real run.
                assert!(e.check(&pair).is_err(), "{} accepted {k}={v:?} (allowed: {allowed})", e.name);
                let out = Command::new(bin).args(["run", e.name, "--param", &format!("{k}={v}")]).output().unwrap();
                let msg = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{} {k}={v:?}: {msg}", e.name);
                assert!(msg.contains(&format!("conclab: {k}")) || msg.contains(&k), "{} {k}={v:?}: {msg}", e.name);
                assert!(msg.contains(&allowed), "{} {k}={v:?} does not say {allowed:?}: {msg}", e.name);
                tried += 1;
            }
        }
        let out = Command::new(bin).args(["run", e.name, "--param", "no_such_param=1"]).output().unwrap();
        let msg = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{msg}");
        assert!(msg.contains("no_such_param") && msg.contains(&e.param_names().join(", ")), "{msg}");
    }
    assert!(tried > 100, "only {tried} refusals tried");
}

#[test]
fn the_output_folder_is_checked_before_the_run() {
    let bin = env!("CARGO_BIN_EXE_conclab");
    let t = std::time::Instant::now();
    let out = Command::new(bin).args(["run", "scaling", "--out", "/proc/no/such/folder"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
    assert!(t.elapsed().as_secs() < 5, "the experiment ran before the folder was checked");
    let out = Command::new(bin).args(["run", "scaling", "--out", ""]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin).args(["run", "scaling", "-p", "samples=2", "-p", "samples=3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("twice"));
}
