//! `conclab`: run the lab's experiments without Jupyter.
//!
//! ```text
//! conclab machine                      print the machine card
//! conclab list                         list experiments, their parameters, defaults and ranges
//! conclab run <experiment> [--param key=value]... [--out DIR]
//! ```
//! `run` checks every parameter and the output folder before anything starts, prints the
//! table, and with `--out` writes `<experiment>.json` (parameters, machine, data) and one
//! SVG per figure into DIR — all of them or none. Exit status: 0 done, 1 the run failed
//! (the OS refused, a time budget ran out), 2 a refused parameter or argument.

use conclab::experiments::{experiments, find};
use conclab::lab::{LabError, MachineCard};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage:
  conclab machine
  conclab list
  conclab run <experiment> [--param key=value]... [--out DIR]

exit status: 0 done, 1 the run failed, 2 a refused parameter or argument";

/// Why `run` stopped: a refusal (exit 2) or a failed run (exit 1).
enum Stop {
    Refused(String),
    Failed(String),
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`conclab list | head`) instead of panicking on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    conclab::lab::budget::progress_to_stderr();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("machine") => {
            print!("{}", MachineCard::current().table().to_text());
            ExitCode::SUCCESS
        }
        Some("list") => {
            list();
            ExitCode::SUCCESS
        }
        Some("run") => match run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(Stop::Refused(msg)) => {
                eprintln!("conclab: {msg}");
                ExitCode::from(2)
            }
            Err(Stop::Failed(msg)) => {
                eprintln!("conclab: {msg}");
                ExitCode::from(1)
            }
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn list() {
    for e in experiments() {
        println!("{:<24} [{}] {}", e.name, e.notebook, e.about);
        for k in e.param_names() {
            let default = e.defaults().get(&k).map(|v| v.to_string()).unwrap_or_default();
            println!("    {k:<20} = {default:<28} {}", e.allowed(&k).unwrap_or_default());
        }
    }
}

fn run(args: &[String]) -> Result<(), Stop> {
    let refuse = |m: String| Stop::Refused(m);
    let name = args.first().ok_or_else(|| refuse(format!("run needs an experiment name\n{USAGE}")))?;
    let exp = find(name).ok_or_else(|| {
        let names: Vec<&str> = experiments().iter().map(|e| e.name).collect();
        refuse(format!("no experiment called {name:?}; known: {}", names.join(", ")))
    })?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--param" | "-p" => {
                let kv = rest.next().ok_or_else(|| refuse("--param needs key=value".into()))?;
                let (k, v) =
                    kv.split_once('=').ok_or_else(|| refuse(format!("--param needs key=value, got {kv:?}")))?;
                let k = k.trim().to_string();
                if k.is_empty() {
                    return Err(refuse(format!(
                        "--param {kv:?} has no name before '='; {} takes {}",
                        exp.name,
                        exp.param_names().join(", ")
                    )));
                }
                if pairs.iter().any(|(seen, _)| *seen == k) {
                    return Err(refuse(format!("--param {k} is given twice; give each parameter once")));
                }
                pairs.push((k, v.trim().to_string()));
            }
            "--out" | "-o" => {
                let dir = rest.next().ok_or_else(|| refuse("--out needs a folder".into()))?;
                out = Some(PathBuf::from(dir));
            }
            other => return Err(refuse(format!("unexpected argument {other:?}\n{USAGE}"))),
        }
    }
    // Everything that can be refused is refused before the experiment starts.
    exp.check(&pairs).map_err(|e| refuse(e.to_string()))?;
    if let Some(dir) = &out {
        writable(dir).map_err(refuse)?;
    }
    let report = exp.run(&pairs).map_err(|e| match e {
        LabError::Param(e) => Stop::Refused(e.to_string()),
        LabError::Run(e) => Stop::Failed(e.to_string()),
    })?;
    print!("{}", report.table().to_text());
    let findings = report.findings();
    if !findings.is_empty() {
        println!("\nWhat this run shows:");
        for f in &findings {
            println!("  - {}", f.line());
        }
    }
    let Some(dir) = out else { return Ok(()) };
    let mut figures = report.figures();
    // `figures`: each line chart's series, for `Figure::with_reference` in the notebooks.
    let json = serde_json::json!({
        "experiment": exp.name,
        "notebook": exp.notebook,
        "params": pairs.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "machine": serde_json::to_value(MachineCard::current()).unwrap_or_default(),
        "findings": serde_json::to_value(&findings).unwrap_or_default(),
        "figures": conclab::lab::figure::reference::figures_json(&figures),
        "report": report.to_json(),
    });
    let mut files = vec![(format!("{}.json", exp.name), serde_json::to_string_pretty(&json).unwrap_or_default())];
    if let Some(main) = figures.first_mut() {
        *main = main.clone().findings(&findings);
    }
    for (i, f) in figures.iter().enumerate() {
        let file = if i == 0 { format!("{}.svg", exp.name) } else { format!("{}-{}.svg", exp.name, i + 1) };
        files.push((file, f.to_svg()));
    }
    for path in write_all(&dir, &files).map_err(Stop::Failed)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Checks, before a run, that results can be written into `dir` (creating it if needed).
fn writable(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Err("--out needs a folder name (got an empty one)".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("--out: cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".conclab-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("--out: cannot write into {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Writes every file or none: each goes to a temporary name first, and only when all are
/// written are they renamed into place.
fn write_all(dir: &Path, files: &[(String, String)]) -> Result<Vec<PathBuf>, String> {
    let tmp = |name: &str| dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut written: Vec<&str> = Vec::new();
    for (name, text) in files {
        if let Err(e) = std::fs::write(tmp(name), text) {
            for n in &written {
                let _ = std::fs::remove_file(tmp(n));
            }
            let _ = std::fs::remove_file(tmp(name));
            return Err(format!("cannot write {}: {e} (nothing was written)", dir.join(name).display()));
        }
        written.push(name);
    }
    let mut done = Vec::new();
    for (name, _) in files {
        let path = dir.join(name);
        std::fs::rename(tmp(name), &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        done.push(path);
    }
    Ok(done)
}
