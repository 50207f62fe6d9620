//! The compiler's whole answer. evcxr shows the first lines of a compile error and drops
//! rustc's `help:` and `note:` lines — often the part that explains it ("the trait `Sync`
//! is not implemented for `Cell<i32>`", "required by this bound in `spawn`").
//! [`full_diagnostic`] compiles a snippet with the same `rustc` evcxr uses (the `RUSTC`
//! variable, else `rustc` on the `PATH`), bounded in time, and shows everything it says.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long rustc may take to check a snippet before it is stopped.
const LIMIT: Duration = Duration::from_secs(60);

/// What rustc said about a snippet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The error codes it named, in order (`E0277`, …).
    pub codes: Vec<String>,
    /// rustc's full output, with machine-specific paths shortened.
    pub text: String,
    /// Whether the snippet compiled.
    pub compiled: bool,
}

impl Diagnostic {
    /// Whether rustc named error `code` (e.g. `"E0277"`).
    pub fn has(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c == code)
    }

    /// The lines that start with `help:` or `note:` (after the `= ` gutter, if any).
    pub fn explanations(&self) -> Vec<&str> {
        self.text
            .lines()
            .map(|l| l.trim_start().trim_start_matches("= ").trim_start_matches('|').trim_start())
            .filter(|l| l.starts_with("help:") || l.starts_with("note:"))
            .collect()
    }

    pub fn evcxr_display(&self) {
        let head = if self.compiled {
            "rustc: the snippet compiles".to_string()
        } else {
            "rustc's full diagnostic (line 1 is the `fn main() {` wrapped around the snippet, which starts on line 2)"
                .to_string()
        };
        let html = format!(
            "<div class=\"conclab-diagnostic\"><div style=\"font-weight:bold\">{}</div>\
             <pre style=\"background:#f6f6f6;padding:6px 10px;border-left:4px solid #888;white-space:pre-wrap\">{}</pre></div>",
            crate::lab::table::escape(&head),
            crate::lab::table::escape(&self.text)
        );
        crate::lab::display::emit(&[("text/html", &html), ("text/plain", &format!("{head}\n{}", self.text))]);
    }
}

impl crate::lab::Rich for Diagnostic {
    fn evcxr_display(&self) {
        Diagnostic::evcxr_display(self)
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compiles `snippet` — the body of a cell, wrapped in `fn main() { … }` — with rustc
/// (edition 2024, warnings off, no code generated) and returns everything it said,
/// `help:` and `note:` lines included. Gives up after a minute. A missing rustc or a
/// failed start is reported in the text, never as a panic.
pub fn full_diagnostic(snippet: &str) -> Diagnostic {
    match run_rustc(snippet) {
        Ok(d) => d,
        Err(e) => Diagnostic { codes: Vec::new(), text: format!("could not run rustc: {e}"), compiled: false },
    }
}

fn rustc() -> PathBuf {
    std::env::var_os("RUSTC").filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from("rustc"), PathBuf::from)
}

fn scratch_dir() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("conclab-rustc-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn run_rustc(snippet: &str) -> Result<Diagnostic, String> {
    let dir = scratch_dir().map_err(|e| e.to_string())?;
    let out = check_in(&dir, snippet);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn check_in(dir: &Path, snippet: &str) -> Result<Diagnostic, String> {
    let src = dir.join("cell.rs");
    // Blank lines around the snippet (a raw string starting on its own line) are dropped,
    // so the snippet's first line is line 2.
    let snippet = snippet.trim_start_matches(['\n', '\r']).trim_end();
    std::fs::write(&src, format!("fn main() {{\n{snippet}\n}}\n")).map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(dir.join("stderr.txt")).map_err(|e| e.to_string())?;
    let mut child = Command::new(rustc())
        .current_dir(dir)
        .args(["--edition", "2024", "--crate-type", "bin", "--crate-name", "cell", "--emit", "metadata"])
        .args(["--color", "never", "-A", "warnings", "-o", "cell.rmeta", "cell.rs"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("{} ({e})", rustc().display()))?;
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("rustc did not finish within {} s", LIMIT.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let raw = std::fs::read_to_string(dir.join("stderr.txt")).map_err(|e| e.to_string())?;
    let text = tidy(&raw, dir);
    Ok(Diagnostic { codes: codes(&text), text, compiled: status.success() })
}

/// Error codes named in `error[E0277]: …` headers, in order, without repeats.
fn codes(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in text.split("error[").skip(1) {
        if let Some(code) = part.split(']').next()
            && code.len() == 5
            && code.starts_with('E')
            && !out.iter().any(|c| c == code)
        {
            out.push(code.to_string());
        }
    }
    out
}

/// Shortens paths that only mean something on this machine: the scratch folder, the
/// toolchain's copy of the standard library (`…/lib/rustlib/src/rust/library/std/…` and
/// `/rustc/<hash>/library/…` become `library/std/…`), and the home folder.
fn tidy(raw: &str, dir: &Path) -> String {
    let dir = dir.display().to_string();
    raw.lines()
        .map(|line| {
            let mut l = line.replace(&format!("{dir}/"), "").replace(&dir, ".");
            for marker in ["/lib/rustlib/src/rust/library/", "/library/"] {
                if let Some(at) = l.find(marker) {
                    // The path starts after the last space (or arrow) before the marker.
                    let start = l[..at].rfind([' ', '>']).map_or(0, |i| i + 1);
                    let keep_from = at + marker.len() - "library/".len();
                    if l[start..at].starts_with('/') {
                        l.replace_range(start..keep_from, "");
                    }
                    break;
                }
            }
            if let Some(home) = std::env::var_os("HOME").map(|h| h.to_string_lossy().into_owned())
                && home.len() > 1
            {
                l = l.replace(&home, "~");
            }
            l.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_help_and_note_lines_evcxr_drops() {
        let d = full_diagnostic(
            "\nuse std::cell::Cell;\nlet hits = Cell::new(0);\nstd::thread::scope(|s| {\n    s.spawn(|| hits.set(1));\n});",
        );
        assert!(!d.compiled);
        assert_eq!(d.codes, vec!["E0277"], "{}", d.text);
        assert!(d.text.contains("cannot be shared between threads safely"), "{}", d.text);
        assert!(d.explanations().iter().any(|l| l.contains("Sync")), "{:?}", d.explanations());
        assert!(d.text.contains("required by this bound"), "{}", d.text);
        assert!(!d.text.contains("conclab-rustc-"), "scratch path hidden: {}", d.text);
        assert!(!d.text.contains("/rustlib/"), "toolchain path hidden: {}", d.text);
        assert!(d.text.contains("library/std/"), "{}", d.text);
        assert!(d.text.contains("cell.rs:5:"), "the snippet's 4th line is line 5: {}", d.text);
    }

    #[test]
    fn a_good_snippet_compiles() {
        let d = full_diagnostic("let v = vec![1, 2];\nprintln!(\"{v:?}\");");
        assert!(d.compiled, "{}", d.text);
        assert!(d.codes.is_empty());
    }

    #[test]
    fn paths_are_shortened() {
        let dir = Path::new("/tmp/conclab-rustc-1-0");
        let raw = "  --> /tmp/conclab-rustc-1-0/cell.rs:3:5\n   --> /root/.rustup/toolchains/x/lib/rustlib/src/rust/library/std/src/thread/mod.rs:7:1\n  --> /rustc/abc/library/core/src/ops.rs:1:1";
        let t = tidy(raw, dir);
        assert!(t.contains("--> cell.rs:3:5"), "{t}");
        assert!(t.contains("--> library/std/src/thread/mod.rs:7:1"), "{t}");
        assert!(t.contains("--> library/core/src/ops.rs:1:1"), "{t}");
        assert_eq!(codes("error[E0382]: x\nerror[E0382]: y\nerror[E0499]: z"), vec!["E0382", "E0499"]);
    }
}
