//! Findings: what a report's own data show, in sentences with the numbers, the comparison
//! and how sure it is. Every report states them (see [`crate::lab::Report::findings`]);
//! the notebook shows them under the figure and the CLI prints them after the table, so
//! the text around a figure never has to carry numbers from another machine.

use crate::lab::figure::fmt_num;
use crate::lab::timing::Stats;
use serde::Serialize;

/// How much weight a finding can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Sure {
    /// The effect is larger than the spread: the quartile ranges do not overlap.
    Clear,
    /// The data lean this way, but the spreads overlap (or there are too few samples to
    /// have a spread): re-run or take more samples.
    Unclear,
    /// A count, a condition or a caution rather than a comparison.
    Note,
}

/// One sentence about this run's data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub text: String,
    pub sure: Sure,
}

impl Finding {
    pub fn clear(text: impl Into<String>) -> Finding {
        Finding { text: text.into(), sure: Sure::Clear }
    }
    pub fn unclear(text: impl Into<String>) -> Finding {
        Finding { text: text.into(), sure: Sure::Unclear }
    }
    pub fn note(text: impl Into<String>) -> Finding {
        Finding { text: text.into(), sure: Sure::Note }
    }

    /// The sentence with its confidence marker, as shown under a figure.
    pub fn line(&self) -> String {
        match self.sure {
            Sure::Clear => self.text.clone(),
            Sure::Unclear => format!("{} (not clear: the spreads overlap, or too few samples to tell)", self.text),
            Sure::Note => self.text.clone(),
        }
    }
}

/// Fewest samples whose p25–p75 range says anything about the spread.
pub const MIN_SAMPLES: usize = 3;

/// Whether the p25–p75 ranges of two summaries are apart. Never with fewer than
/// [`MIN_SAMPLES`] on either side: one sample's "range" is a point, and two points apart
/// say nothing about how far repeated runs would scatter.
pub fn separated(a: &Stats, b: &Stats) -> bool {
    a.n >= MIN_SAMPLES && b.n >= MIN_SAMPLES && (a.p75 < b.p25 || b.p75 < a.p25)
}

/// "`a_name` took 4.7 µs, 8.3× less than `b_name` (39 µs)": the two medians, their ratio,
/// and whether the quartile ranges separate them. `unit` follows each number ("µs", " ms").
pub fn compare(a_name: &str, a: &Stats, b_name: &str, b: &Stats, unit: &str) -> Finding {
    let (lo, hi) = (a.median.min(b.median), a.median.max(b.median));
    let ratio = if lo > 0.0 { hi / lo } else { f64::INFINITY };
    let text = if (ratio - 1.0).abs() < 0.05 {
        format!("{a_name} and {b_name} are about equal ({}{unit} vs {}{unit})", fmt_num(a.median), fmt_num(b.median))
    } else {
        let word = if a.median < b.median { "less" } else { "more" };
        format!(
            "{a_name}: {}{unit}, {}× {word} than {b_name} ({}{unit})",
            fmt_num(a.median),
            fmt_num(ratio),
            fmt_num(b.median)
        )
    };
    if separated(a, b) { Finding::clear(text) } else { Finding::unclear(text) }
}

/// A ratio `r` = new / old in words: `same` when within `tolerance` of 1, else `up(r)`
/// or `down(1 / r)` (both given a factor ≥ 1, already formatted).
pub fn change_words(
    r: f64,
    tolerance: f64,
    same: &str,
    up: impl Fn(&str) -> String,
    down: impl Fn(&str) -> String,
) -> String {
    if (r - 1.0).abs() < tolerance {
        same.to_string()
    } else if r > 1.0 {
        up(&fmt_num(r))
    } else {
        down(&fmt_num(1.0 / r))
    }
}

/// "0 in 1 000 trials": a count with its trial count, and for zero the 95 % upper bound
/// of the rate (the rule of three: fewer than 3 / trials).
pub fn count_of(what: &str, count: u64, trials: u64) -> Finding {
    count_in(what, count, trials, "trials")
}

/// [`count_of`] with another word for what was counted ("observations", "runs").
pub fn count_in(what: &str, count: u64, trials: u64, unit: &str) -> Finding {
    if count == 0 {
        Finding::note(format!(
            "{what}: 0 in {} {unit} — at 95 % confidence fewer than {} per {} {unit}",
            group(trials),
            fmt_num(zero_bound(trials) * per(trials) as f64),
            group(per(trials))
        ))
    } else {
        Finding::note(format!(
            "{what}: {} in {} {unit} ({} %)",
            group(count),
            group(trials),
            fmt_num(100.0 * count as f64 / trials as f64)
        ))
    }
}

/// The 95 % upper bound of a rate after 0 events in `trials`: the rule of three (3 /
/// trials) from 30 trials on, below that the exact 1 − 0.05^(1/trials) (the rule of
/// three would claim more than certainty: "fewer than 3 000 per 1 000" after one trial).
fn zero_bound(trials: u64) -> f64 {
    let n = trials.max(1) as f64;
    if trials >= 30 { 3.0 / n } else { 1.0 - 0.05f64.powf(1.0 / n) }
}

/// A round "per" base for rates: 1 000, 1 000 000, … at least as large as `trials`.
fn per(trials: u64) -> u64 {
    let mut p = 1_000;
    while p < trials && p < 1_000_000_000_000 {
        p *= 1_000;
    }
    p
}

/// 1234567 as "1 234 567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(median: f64, p25: f64, p75: f64) -> Stats {
        Stats { n: 5, median, p25, p75, min: p25, max: p75, mean: median, cv: 0.1 }
    }

    #[test]
    fn comparisons_say_the_ratio_and_how_sure() {
        let f = compare("same CPU", &st(5.0, 4.5, 5.5), "two CPUs", &st(40.0, 35.0, 45.0), " µs");
        assert_eq!(f.sure, Sure::Clear);
        assert!(f.text.contains("8× less than two CPUs (40 µs)"), "{}", f.text);
        let f = compare("a", &st(10.0, 8.0, 12.0), "b", &st(11.0, 9.0, 13.0), " ms");
        assert_eq!(f.sure, Sure::Unclear);
        assert!(f.line().contains("not clear"));
        let f = compare("a", &st(10.0, 9.0, 11.0), "b", &st(10.2, 9.0, 11.0), " ms");
        assert!(f.text.contains("about equal"), "{}", f.text);
        // One sample each: far apart, but nothing says how far repeated runs scatter.
        let one = |m: f64| Stats { n: 1, ..st(m, m, m) };
        let f = compare("a", &one(5.0), "b", &one(40.0), " µs");
        assert_eq!(f.sure, Sure::Unclear);
        assert!(f.line().contains("too few samples"), "{}", f.line());
    }

    #[test]
    fn zero_counts_carry_their_trials_and_bound() {
        let f = count_of("a=0, b=0 under SeqCst", 0, 1_000);
        assert!(f.text.contains("0 in 1 000 trials"), "{}", f.text);
        assert!(f.text.contains("fewer than 3 per 1 000"), "{}", f.text);
        let f = count_of("reordered", 0, 200_000);
        assert!(f.text.contains("fewer than 15 per 1 000 000"), "{}", f.text);
        assert!(count_of("x", 5, 1_000).text.contains("0.5 %"));
        assert_eq!(group(1_234_567), "1 234 567");
        let w = |r| change_words(r, 0.1, "same", |x| format!("rose {x}×"), |x| format!("fell {x}×"));
        assert_eq!((w(1.05), w(2.0), w(0.5)), ("same".into(), "rose 2×".into(), "fell 2×".into()));
        assert!(count_in("stale", 0, 5_000, "observations").text.contains("0 in 5 000 observations"));
        // One trial bounds the rate below 95 %, not below 300 %.
        let f = count_of("lost", 0, 1);
        assert!(f.text.contains("fewer than 950 per 1 000"), "{}", f.text);
    }
}
