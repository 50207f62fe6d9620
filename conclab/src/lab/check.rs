//! Self-check exercises: the reader writes code in a cell, a checker in the crate runs it
//! (bounded in time, on its own threads) and answers with a [`Verdict`]: passed, or not yet
//! with a hint. A verdict shows itself as a green or amber box, never as an error, so a
//! notebook whose exercises are still open runs clean.

use serde::Serialize;

/// A checker's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The exercise, e.g. "ticket lock".
    pub exercise: String,
    pub passed: bool,
    /// What was checked and what was seen ("1 000 runs, 0 deadlocks").
    pub detail: String,
    /// When not passed: what to look at next.
    pub hint: Option<String>,
}

impl Verdict {
    /// The exercise passed; `detail` says what was checked.
    pub fn pass(exercise: &str, detail: impl Into<String>) -> Verdict {
        Verdict { exercise: exercise.into(), passed: true, detail: detail.into(), hint: None }
    }

    /// Not yet: `detail` says what was seen, `hint` what to try.
    pub fn not_yet(exercise: &str, detail: impl Into<String>, hint: impl Into<String>) -> Verdict {
        Verdict { exercise: exercise.into(), passed: false, detail: detail.into(), hint: Some(hint.into()) }
    }

    /// One line: `✓ ticket lock: …` or `✗ ticket lock (not yet): … Hint: …`.
    pub fn line(&self) -> String {
        match &self.hint {
            None => format!("✓ {}: {}", self.exercise, self.detail),
            Some(h) => format!("✗ {} (not yet): {} Hint: {h}", self.exercise, self.detail),
        }
    }

    /// Shows the verdict as a green (passed) or amber (not yet) box.
    pub fn evcxr_display(&self) {
        let (border, background) = if self.passed { ("#2e7d32", "#e8f5e9") } else { ("#b26a00", "#fff4e5") };
        let html = format!(
            "<div class=\"conclab-check\" style=\"border-left:4px solid {border};background:{background};\
             padding:6px 10px\">{}</div>",
            crate::lab::table::escape(&self.line())
        );
        crate::lab::display::emit(&[("text/html", &html), ("text/plain", &format!("Check: {}", self.line()))]);
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_as_pass_or_not_yet_with_a_hint() {
        assert_eq!(Verdict::pass("x", "ran 10 times").line(), "✓ x: ran 10 times");
        let v = Verdict::not_yet("x", "lost 3 updates", "use fetch_add");
        assert!(!v.passed);
        assert_eq!(v.line(), "✗ x (not yet): lost 3 updates Hint: use fetch_add");
    }
}
