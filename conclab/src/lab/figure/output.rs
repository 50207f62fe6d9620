//! The frame around every kind's plot, and the figure's two outputs: the SVG (title,
//! y-axis title, plot block, legend band, notes, errors, caption, top to bottom, all
//! text wrapped to the width) and the plain-text summary.

use super::axes::{DrawResult, Rect};
use super::legend::{self, Entry};
use super::text::{self, BODY_PX, GREY, INK, LINE_PX, TITLE_LINE_PX, TITLE_PX};
use super::{Ctx, Figure, Plot};
use crate::lab::table::escape;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

const MARGIN: i32 = 12;

/// Where things landed in a drawn figure (SVG pixels), for tests and callers that
/// compose figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    pub width: u32,
    pub height: u32,
    /// The plotting rectangles (one per panel).
    pub plots: Vec<Rect>,
    /// The legend band's box, when there is a legend.
    pub legend: Option<Rect>,
}

fn entries(cx: &Ctx<'_>) -> Vec<Entry> {
    match &cx.fig.plot {
        Plot::Lines(l) => l.legend(),
        Plot::Bars(b) => b.legend(cx),
        Plot::Histogram(_) => Vec::new(), // each panel is labelled with its set's name
        Plot::Timeline(t) => t.legend(),
        Plot::Heatmap(_) => Vec::new(),
    }
}

/// The heading of a figure's findings, in the SVG and the summary.
pub(crate) const FINDINGS_HEADING: &str = "What this run shows:";

/// The findings as a list under its heading (nothing when there are none).
fn finding_lines(fig: &Figure) -> Vec<String> {
    if fig.findings.is_empty() {
        return Vec::new();
    }
    std::iter::once(FINDINGS_HEADING.to_string()).chain(fig.findings.iter().map(|f| format!("• {f}"))).collect()
}

/// Notes drawn under the legend: the kind's own, then the caller's.
fn notes(cx: &Ctx<'_>) -> Vec<String> {
    let mut n = match &cx.fig.plot {
        Plot::Bars(b) => b.notes(cx),
        Plot::Heatmap(h) => h.notes(),
        _ => Vec::new(),
    };
    n.extend(cx.fig.notes.iter().cloned());
    n
}

fn wrapped(lines: &[String], px: f64, width: f64) -> Vec<String> {
    lines.iter().flat_map(|l| text::wrap(l, px, width)).collect()
}

/// Draws the figure into an SVG string.
pub(crate) fn render(fig: &Figure) -> DrawResult<(String, Layout)> {
    let cx = fig.ctx();
    let w = fig.width as i32;
    let inner = (w - 2 * MARGIN) as f64;
    // bold glyphs run about 8% wider than the estimate for regular ones
    let title = text::wrap(&fig.title, TITLE_PX * 1.08, inner);
    let y_title = text::wrap(&fig.y_label, BODY_PX, inner);
    let base = (fig.height as i32 - 80).max(200);
    let block = match &fig.plot {
        Plot::Histogram(h) => h.block_height(base),
        _ => base,
    };
    let entries = entries(&cx);
    let legend_left = MARGIN + cx.y_area as i32;
    let legend_w = w - legend_left - MARGIN;
    let findings = wrapped(&finding_lines(fig), BODY_PX, inner);
    let notes = wrapped(&notes(&cx), BODY_PX, inner);
    let errors = wrapped(&fig.errors.iter().map(|e| format!("figure error: {e}")).collect::<Vec<_>>(), BODY_PX, inner);
    let caption = text::wrap(&fig.caption, BODY_PX, inner);
    let height = 10
        + title.len() as i32 * TITLE_LINE_PX
        + 4
        + y_title.len() as i32 * LINE_PX
        + block
        + legend::height(&entries, legend_w)
        + 6
        + (findings.len() + notes.len() + errors.len() + caption.len()) as i32 * LINE_PX
        + 8;

    let mut svg = String::new();
    let layout = {
        let root = SVGBackend::with_string(&mut svg, (fig.width, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut y = 10;
        let top_left = Pos::new(HPos::Left, VPos::Top);
        for line in &title {
            let style = text::font(TITLE_PX).style(FontStyle::Bold).color(&INK).pos(top_left);
            root.draw(&Text::new(line.clone(), (MARGIN, y), style))?;
            y += TITLE_LINE_PX;
        }
        y += 4;
        for line in &y_title {
            root.draw(&Text::new(line.clone(), (MARGIN, y), text::font(BODY_PX).color(&INK).pos(top_left)))?;
            y += LINE_PX;
        }
        let area = root.clone().shrink((0, y), (fig.width, block as u32));
        let plots = match &fig.plot {
            Plot::Lines(l) => l.draw(&cx, &area)?,
            Plot::Bars(b) => b.draw(&cx, &area)?,
            Plot::Histogram(h) => h.draw(&cx, &area, base)?,
            Plot::Timeline(t) => t.draw(&cx, &area)?,
            Plot::Heatmap(h) => h.draw(&cx, &area)?,
        };
        y += block;
        let left = plots.first().map_or(legend_left, |r| r.0);
        let legend = legend::draw(&root, &entries, left, y, w - left - MARGIN)?;
        y += legend::height(&entries, legend_w) + 6;
        for (lines, color) in [(&findings, INK), (&notes, INK), (&errors, text::ERROR_RED), (&caption, GREY)] {
            for line in lines {
                root.draw(&Text::new(line.clone(), (MARGIN, y), text::font(BODY_PX).color(&color).pos(top_left)))?;
                y += LINE_PX;
            }
        }
        root.present()?;
        Layout { width: fig.width, height: height as u32, plots, legend }
    };
    Ok((svg, layout))
}

/// The SVG, or a short SVG saying why the figure could not be drawn (never a panic).
pub(crate) fn to_svg(fig: &Figure) -> String {
    match render(fig) {
        Ok((svg, _)) => svg,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"60\"><text x=\"10\" y=\"30\">\
             figure could not be drawn: {}</text></svg>",
            escape(&e.to_string()),
            w = fig.width
        ),
    }
}

pub(crate) fn summary(fig: &Figure) -> String {
    let cx = fig.ctx();
    let mut s = format!("{}\n", fig.title);
    match &fig.plot {
        Plot::Lines(l) => l.summary(&cx, &mut s),
        Plot::Bars(b) => b.summary(&cx, &mut s),
        Plot::Histogram(h) => h.summary(&cx, &mut s),
        Plot::Timeline(t) => t.summary(&mut s),
        Plot::Heatmap(h) => h.summary(&mut s),
    }
    for f in finding_lines(fig) {
        let _ = writeln!(s, "{f}");
    }
    for n in notes(&cx) {
        let _ = writeln!(s, "{n}");
    }
    for e in &fig.errors {
        let _ = writeln!(s, "figure error: {e}");
    }
    let _ = write!(s, "[{}]", fig.caption);
    s
}
