//! Text in figures: sizes in SVG pixels, width estimates, word wrapping, and the compact
//! number format shared by ticks and plain-text summaries.

use plotters::prelude::*;
use plotters::style::FontDesc;

/// Body text (ticks, axis labels, legend, notes, caption): the notebook's own ~15 px.
pub(crate) const BODY_PX: f64 = 15.0;
/// The title, one step larger than body text.
pub(crate) const TITLE_PX: f64 = 19.0;
/// Line height for body text.
pub(crate) const LINE_PX: i32 = 21;
/// Line height for the title.
pub(crate) const TITLE_LINE_PX: i32 = 25;

pub(crate) const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);
pub(crate) const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub(crate) const ERROR_RED: RGBColor = RGBColor(0xc0, 0x39, 0x2b);

/// A sans-serif font whose rendered size is `px` SVG pixels (plotters' SVG backend
/// writes `font-size` as the requested size divided by 1.24).
pub(crate) fn font(px: f64) -> FontDesc<'static> {
    ("sans-serif", px * 1.24).into_font()
}

/// Estimated width of `s` in a sans-serif font of `px` pixels: an average glyph is a
/// little over half an em. Deliberately generous, so wrapped text never overflows.
pub(crate) fn width(s: &str, px: f64) -> f64 {
    s.chars().map(|c| if c.is_uppercase() || "mwMW%@".contains(c) { 0.72 } else { 0.56 }).sum::<f64>() * px
}

/// Splits `s` into lines no wider than `max_px` at `px` pixels, breaking at spaces (a
/// single word longer than a line is broken where it must be).
pub(crate) fn wrap(s: &str, px: f64, max_px: f64) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if width(&candidate, px) <= max_px || line.is_empty() && width(word, px) <= max_px {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // The word alone: break it if even that is too long.
        let mut rest = word.to_string();
        while width(&rest, px) > max_px && rest.chars().count() > 1 {
            let mut cut = 1;
            while cut < rest.chars().count() && width(&rest.chars().take(cut + 1).collect::<String>(), px) <= max_px {
                cut += 1;
            }
            lines.push(rest.chars().take(cut).collect());
            rest = rest.chars().skip(cut).collect();
        }
        line = rest;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Compact number formatting for ticks and summaries: 3 significant digits, no trailing
/// zeros, exponent form for very large or small values.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.1e}").replace(".0e", "e");
    }
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        (2.0 - a.log10().floor()) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(1.0), "1");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(456.7), "457");
        assert_eq!(fmt_num(0.01234), "0.0123");
        assert_eq!(fmt_num(2.0e7), "2e7");
    }

    #[test]
    fn long_text_wraps_within_the_width() {
        let s = "2 cores (AMD EPYC 7B13, 2 usable), Linux 6.1, rustc 1.86, release build, measured 2025-01-01 12:00";
        let lines = wrap(s, BODY_PX, 300.0);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, BODY_PX) <= 300.0), "{lines:?}");
        assert_eq!(lines.join(" "), s);
        let long = wrap(&"x".repeat(100), BODY_PX, 100.0);
        assert!(long.iter().all(|l| width(l, BODY_PX) <= 100.0), "{long:?}");
        assert!(wrap("", BODY_PX, 100.0).is_empty());
    }
}
