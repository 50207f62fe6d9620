//! `conclab`: run the lab's experiments without Jupyter.
//!
//! ```text
//! conclab machine                      print the machine card
//! conclab list                         list experiments and their default parameters
//! conclab run <experiment> [--param key=value]... [--out DIR]
//! ```
//! `run` prints the table, and with `--out` writes `<experiment>.json` (parameters,
//! machine, data) and one SVG per figure into DIR.

use conclab::experiments::{experiments, find};
use conclab::lab::MachineCard;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  conclab machine
  conclab list
  conclab run <experiment> [--param key=value]... [--out DIR]";

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`conclab list | head`) instead of panicking on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("machine") => {
            print!("{}", MachineCard::current().table().to_text());
            ExitCode::SUCCESS
        }
        Some("list") => {
            for e in experiments() {
                println!("{:<24} [{}] {}", e.name, e.notebook, e.about);
                println!("{:<24} defaults: {}", "", e.defaults());
            }
            ExitCode::SUCCESS
        }
        Some("run") => match run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("conclab: {msg}");
                ExitCode::from(2)
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

fn run(args: &[String]) -> Result<(), String> {
    let name = args.first().ok_or_else(|| format!("run needs an experiment name\n{USAGE}"))?;
    let exp = find(name).ok_or_else(|| {
        let names: Vec<&str> = experiments().iter().map(|e| e.name).collect();
        format!("no experiment called {name:?}; known: {}", names.join(", "))
    })?;
    let mut pairs = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--param" | "-p" => {
                let kv = rest.next().ok_or("--param needs key=value")?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--param needs key=value, got {kv:?}"))?;
                pairs.push((k.trim().to_string(), v.trim().to_string()));
            }
            "--out" | "-o" => out = Some(rest.next().ok_or("--out needs a folder")?.into()),
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    let report = exp.run(&pairs).map_err(|e| e.to_string())?;
    print!("{}", report.table().to_text());
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let json = serde_json::json!({
            "experiment": exp.name,
            "notebook": exp.notebook,
            "params": pairs.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "machine": serde_json::to_value(MachineCard::current()).unwrap_or_default(),
            "report": report.to_json(),
        });
        let path = dir.join(format!("{}.json", exp.name));
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap_or_default())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        for (i, f) in report.figures().iter().enumerate() {
            let file = if i == 0 { format!("{}.svg", exp.name) } else { format!("{}-{}.svg", exp.name, i + 1) };
            let path = dir.join(file);
            f.save_svg(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
        println!("wrote {}", dir.join(format!("{}.json", exp.name)).display());
    }
    Ok(())
}
