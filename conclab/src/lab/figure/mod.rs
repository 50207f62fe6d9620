//! Figures: line charts with spread bands, grouped bars, histograms and timelines, drawn
//! with plotters as SVG. A figure shows itself in a notebook (SVG plus a plain-text
//! summary for readers of the text) and saves itself for the CLI.
//!
//! One module per plot kind ([`lines`], [`bars`], [`histogram`], [`timeline`]), each with
//! its own bounds, drawing and summary; shared parts: [`axes`] (scales, ticks, whiskers),
//! [`legend`] (always in a band under the plot, never over data), `text` (sizes, wrapping)
//! and `output` (the frame: title, y-axis title, legend, notes, caption).
//!
//! A builder call that does not fit the kind (`.series()` on a bar chart, `.span()` on a
//! histogram) is not ignored: it is recorded in [`Figure::errors`], drawn in red in the
//! figure and listed in the summary.

pub mod axes;
pub mod bars;
pub mod heatmap;
pub mod histogram;
pub mod legend;
pub mod lines;
mod output;
pub mod reference;
mod text;
pub mod timeline;

pub use axes::{AUTO_LOG_RATIO, Scale};
pub use bars::{Bar, Bars};
pub use heatmap::Heatmap;
pub use histogram::Histogram;
pub use legend::Legend;
pub use lines::{Lines, Point, Series, Style};
pub use text::fmt_num;
pub use timeline::{Span, Timeline};

use crate::lab::machine::MachineCard;
use plotters::style::RGBColor;
use std::path::Path;

/// What a figure draws: one plot kind and its data.
#[derive(Debug, Clone, PartialEq)]
pub enum Plot {
    Lines(Lines),
    Bars(Bars),
    /// Named sample sets binned over one shared range; see [`Histogram`].
    Histogram(Histogram),
    Timeline(Timeline),
    /// A grid of cells coloured by value; see [`Heatmap`].
    Heatmap(Heatmap),
}

impl Plot {
    /// The kind's name as a reader would say it ("bar chart").
    pub fn kind(&self) -> &'static str {
        match self {
            Plot::Lines(_) => "line chart",
            Plot::Bars(_) => "bar chart",
            Plot::Histogram(_) => "histogram",
            Plot::Timeline(_) => "timeline",
            Plot::Heatmap(_) => "heatmap",
        }
    }
}

/// A chart with a title, labelled axes, a legend and a caption naming the machine.
///
/// Start from [`Figure::lines`], [`Figure::bars`], [`Figure::histogram`] or
/// [`Figure::timeline`] and add data with the kind's own method (`series`, `bar`,
/// `samples`, `span`).
///
/// ```
/// use conclab::lab::{Figure, Point, Series, Style};
/// let f = Figure::lines("Speedup", "threads", "speedup (×)")
///     .series(Series::new("measured", Style::Measured, vec![Point::spread(1.0, 1.0, 0.9, 1.1), Point::new(2.0, 1.9)]))
///     .series(Series::new("ideal", Style::Ideal, vec![Point::new(1.0, 1.0), Point::new(2.0, 2.0)]));
/// assert!(f.to_svg().contains("<svg"));
/// assert!(f.errors.is_empty());
/// // A call that does not fit the kind is an error the figure shows, not a silent no-op:
/// let g = Figure::bars("B", "x", "y").series(Series::new("oops", Style::Measured, vec![]));
/// assert_eq!(g.errors.len(), 1);
/// assert!(g.summary().contains("figure error"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    /// Drawn above the plot, horizontally, where it has the figure's full width.
    pub y_label: String,
    /// [`Scale::Auto`] on line charts by default; linear elsewhere.
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub plot: Plot,
    /// A placement hint kept for existing callers; legends always sit under the plot.
    pub legend: Legend,
    /// Shown under the plot; defaults to the machine card's caption.
    pub caption: String,
    /// What this run's data show (a report's [`crate::lab::Finding`]s), drawn under the
    /// legend as a list headed "What this run shows:" and listed in the summary.
    pub findings: Vec<String>,
    /// Other remarks in words: drawn under the findings and listed in the summary.
    pub notes: Vec<String>,
    /// Builder calls that did not fit this kind of figure; drawn in red and summarised.
    pub errors: Vec<String>,
    /// SVG width in pixels (760 matches the notebook's text column).
    pub width: u32,
    /// Nominal height: the plot block is `height - 80` pixels; a wrapped title, the
    /// legend, notes and caption add to the SVG's height.
    pub height: u32,
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0xba, 0xb0, 0xac),
];

pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(crate) fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// What every kind's drawing and summary needs: the figure and its resolved scales.
pub(crate) struct Ctx<'a> {
    pub fig: &'a Figure,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Pixels left of the plot for y tick labels.
    pub y_area: u32,
    pub width: i32,
}

impl Figure {
    fn new(title: &str, x_label: &str, y_label: &str, plot: Plot) -> Figure {
        let auto = matches!(plot, Plot::Lines(_));
        let scale = if auto { Scale::Auto } else { Scale::Linear };
        Figure {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: scale,
            y_scale: scale,
            plot,
            legend: Legend::UpperLeft,
            caption: MachineCard::current().caption(),
            findings: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
            width: 760,
            height: 440,
        }
    }

    /// An empty line chart. Axes are [`Scale::Auto`]: an axis whose positive data span
    /// more than [`AUTO_LOG_RATIO`] turns logarithmic unless `linear_x`/`linear_y` says no.
    pub fn lines(title: &str, x_label: &str, y_label: &str) -> Figure {
        Figure::new(title, x_label, y_label, Plot::Lines(Lines::default()))
    }

    /// An empty grouped bar chart. On a log y axis the values are drawn as dots.
    pub fn bars(title: &str, x_label: &str, y_label: &str) -> Figure {
        Figure::new(title, x_label, y_label, Plot::Bars(Bars::default()))
    }

    /// An empty histogram with `bins` bins; each sample set gets a panel of its own.
    pub fn histogram(title: &str, x_label: &str, bins: usize) -> Figure {
        let h = Histogram { sets: Vec::new(), bins: bins.max(1) };
        Figure::new(title, x_label, "share of samples (%)", Plot::Histogram(h))
    }

    /// An empty timeline (Gantt chart): one lane per thread or worker.
    pub fn timeline(title: &str, x_label: &str, lane_label: &str) -> Figure {
        Figure::new(title, x_label, lane_label, Plot::Timeline(Timeline::default()))
    }

    /// An empty heatmap: rows (top to bottom) of cells coloured by value.
    pub fn heatmap(title: &str, x_label: &str, row_label: &str) -> Figure {
        Figure::new(title, x_label, row_label, Plot::Heatmap(Heatmap::default()))
    }

    /// Adds a row of cell values (heatmaps only; elsewhere an error the figure shows).
    pub fn row(mut self, name: &str, values: Vec<f64>) -> Figure {
        match &mut self.plot {
            Plot::Heatmap(h) => {
                h.rows.push(name.into());
                h.values.push(values);
                self
            }
            _ => self.misuse(&format!(".row({name:?}, ..)"), "heatmaps (Figure::heatmap)"),
        }
    }

    fn misuse(mut self, call: &str, belongs: &str) -> Figure {
        let kind = self.plot.kind();
        self.errors.push(format!("{call} was called on a {kind} and ignored: it belongs to {belongs}"));
        self
    }

    /// Adds a line series (line charts only; elsewhere an error the figure shows). After
    /// [`Figure::panel`] it goes into the newest panel.
    pub fn series(mut self, mut s: Series) -> Figure {
        match &mut self.plot {
            Plot::Lines(l) => {
                s.panel = l.panels.len().saturating_sub(1);
                l.series.push(s);
                self
            }
            _ => self.misuse(&format!(".series({:?})", s.name), "line charts (Figure::lines)"),
        }
    }

    /// Starts a new panel of a line chart, drawn to the right of the previous one, with
    /// `title` above it; the series added after this call go into it. Panels share the
    /// scales, the legend and each series name's colour, and have their own axis ranges.
    ///
    /// ```
    /// use conclab::lab::{Figure, Point, Series, Style};
    /// let f = Figure::lines("Waiting vs computing", "N", "time (ms)")
    ///     .panel("waiting")
    ///     .series(Series::new("threads", Style::Measured, vec![Point::new(1.0, 50.0), Point::new(10.0, 52.0)]))
    ///     .panel("computing")
    ///     .series(Series::new("threads", Style::Measured, vec![Point::new(1.0, 2.0), Point::new(10.0, 10.0)]));
    /// assert!(f.summary().contains("[computing] threads"));
    /// ```
    pub fn panel(mut self, title: &str) -> Figure {
        match &mut self.plot {
            Plot::Lines(l) => {
                l.panels.push(title.into());
                self
            }
            _ => self.misuse(&format!(".panel({title:?})"), "line charts (Figure::lines)"),
        }
    }

    /// Adds a bar (bar charts only; elsewhere an error the figure shows).
    pub fn bar(mut self, group: &str, series: &str, value: f64, spread: Option<(f64, f64)>) -> Figure {
        match &mut self.plot {
            Plot::Bars(b) => {
                b.bars.push(Bar {
                    group: group.into(),
                    series: series.into(),
                    value,
                    lo: spread.map(|s| s.0),
                    hi: spread.map(|s| s.1),
                });
                self
            }
            _ => self.misuse(&format!(".bar({group:?}, {series:?}, ..)"), "bar charts (Figure::bars)"),
        }
    }

    /// Adds a sample set (histograms only; elsewhere an error the figure shows).
    pub fn samples(mut self, name: &str, samples: Vec<f64>) -> Figure {
        match &mut self.plot {
            Plot::Histogram(h) => {
                h.sets.push((name.into(), samples));
                self
            }
            _ => self.misuse(&format!(".samples({name:?}, ..)"), "histograms (Figure::histogram)"),
        }
    }

    /// Adds a span (timelines only; elsewhere an error the figure shows).
    pub fn span(mut self, lane: &str, key: &str, start: f64, end: f64) -> Figure {
        match &mut self.plot {
            Plot::Timeline(t) => {
                t.spans.push(Span { lane: lane.into(), key: key.into(), start, end });
                self
            }
            _ => self.misuse(&format!(".span({lane:?}, {key:?}, ..)"), "timelines (Figure::timeline)"),
        }
    }

    /// A base-10 log x axis (not on bar charts, whose x axis holds groups).
    pub fn log_x(mut self) -> Figure {
        if let Plot::Bars(_) | Plot::Heatmap(_) = self.plot {
            return self.misuse(".log_x()", "axes of numbers; a bar chart's or heatmap's x axis holds groups or cells");
        }
        self.x_scale = Scale::Log;
        self
    }

    /// A base-10 log y axis (line and bar charts; on a bar chart values become dots).
    pub fn log_y(mut self) -> Figure {
        if let Plot::Histogram(_) | Plot::Timeline(_) | Plot::Heatmap(_) = self.plot {
            return self.misuse(".log_y()", "line and bar charts");
        }
        self.y_scale = Scale::Log;
        self
    }

    /// A linear x axis even where the data span decades (overrides [`Scale::Auto`]).
    pub fn linear_x(mut self) -> Figure {
        self.x_scale = Scale::Linear;
        self
    }

    /// A linear y axis even where the data span decades (overrides [`Scale::Auto`]).
    pub fn linear_y(mut self) -> Figure {
        self.y_scale = Scale::Linear;
        self
    }

    /// A placement hint, kept so existing calls compile: legends always sit in a band
    /// under the plot, where they cannot cover data.
    pub fn legend(mut self, at: Legend) -> Figure {
        self.legend = at;
        self
    }

    /// Replaces the caption (the machine card's by default); long captions wrap.
    pub fn caption(mut self, caption: impl Into<String>) -> Figure {
        self.caption = caption.into();
        self
    }

    /// Adds a finding in words: drawn under the plot and listed in the summary.
    /// Adds a report's findings (see [`crate::lab::Report::findings`]).
    pub fn findings(mut self, findings: &[crate::lab::Finding]) -> Figure {
        self.findings.extend(findings.iter().map(|f| f.line()));
        self
    }

    pub fn note(mut self, line: impl Into<String>) -> Figure {
        self.notes.push(line.into());
        self
    }

    /// Sets the SVG width and the nominal height (see [`Figure::height`]).
    pub fn size(mut self, width: u32, height: u32) -> Figure {
        self.width = width.max(200);
        self.height = height.max(150);
        self
    }

    /// The scales the figure is drawn with, [`Scale::Auto`] resolved from the data.
    pub fn scales(&self) -> (Scale, Scale) {
        let (x, y) = (self.x_scale, self.y_scale);
        let fixed = |s: Scale| if s == Scale::Auto { Scale::Linear } else { s };
        match &self.plot {
            Plot::Lines(l) => l.scales(x, y),
            Plot::Bars(_) => (Scale::Linear, fixed(y)),
            Plot::Histogram(_) | Plot::Timeline(_) => (fixed(x), Scale::Linear),
            Plot::Heatmap(_) => (Scale::Linear, Scale::Linear),
        }
    }

    pub(crate) fn ctx(&self) -> Ctx<'_> {
        let (x_scale, y_scale) = self.scales();
        let mut cx = Ctx { fig: self, x_scale, y_scale, y_area: 0, width: self.width as i32 };
        cx.y_area = match &self.plot {
            Plot::Lines(l) => l.y_area(&cx),
            Plot::Bars(b) => b.y_area(&cx),
            Plot::Histogram(h) => h.y_area(&cx),
            Plot::Timeline(t) => t.y_area(),
            Plot::Heatmap(h) => h.y_area(),
        };
        cx
    }

    /// The figure as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        output::to_svg(self)
    }

    /// Writes the SVG to `path`.
    pub fn save_svg(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_svg())
    }

    /// Plain-text summary: title, the data in words, the notes, any errors and the caption.
    pub fn summary(&self) -> String {
        output::summary(self)
    }

    /// Shows the figure in a notebook: the SVG, with the summary as its plain-text form.
    pub fn evcxr_display(&self) {
        crate::lab::display::emit(&[("image/svg+xml", &self.to_svg()), ("text/plain", &self.summary())]);
    }
}

#[cfg(test)]
mod tests;
