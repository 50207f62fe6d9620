//! Figures: line charts with spread bands, grouped bars, histograms and timelines,
//! drawn with plotters as SVG. A figure shows itself in a notebook (SVG plus a plain-text
//! summary for readers of the text) and saves itself for the CLI.

use crate::lab::machine::MachineCard;
use crate::lab::table::escape;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithmic; values must be positive (others are left out).
    Log,
}

/// Where the legend sits inside the plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    UpperLeft,
    UpperRight,
    LowerLeft,
    LowerRight,
    /// Halfway up the right edge, for figures whose lines hug the top and the bottom.
    MiddleRight,
}

/// One point of a measured series: the median `y` with an optional spread `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

impl Point {
    /// A point without spread.
    pub fn new(x: f64, y: f64) -> Point {
        Point { x, y, lo: None, hi: None }
    }

    /// A point with a spread, e.g. the quartiles of the samples behind the median `y`.
    pub fn spread(x: f64, y: f64, lo: f64, hi: f64) -> Point {
        Point { x, y, lo: Some(lo), hi: Some(hi) }
    }

    /// A speedup point: `speedup` at `x`, with a spread taken from the quartiles of the
    /// time behind it (the slower quartile gives the lower speedup).
    pub fn speedup(x: f64, speedup: f64, time: &crate::lab::Stats) -> Point {
        let m = time.median;
        Point::spread(x, speedup, speedup * m / time.p75, speedup * m / time.p25)
    }
}

/// How a line series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Measured data: line, markers, and a shaded band where points carry a spread.
    Measured,
    /// Measured data drawn with error bars instead of a band.
    ErrorBars,
    /// A limit or ideal (ideal speedup, requested sleep): dashed grey line.
    Ideal,
    /// A fitted model: thin line without markers.
    Fit,
}

/// A named line series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
    pub style: Style,
}

impl Series {
    pub fn new(name: impl Into<String>, style: Style, points: Vec<Point>) -> Series {
        Series { name: name.into(), points, style }
    }
}

/// One bar: its group on the x axis, its series (colour), and its value with spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub group: String,
    pub series: String,
    pub value: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// One span of a timeline: which lane (thread, worker) ran what (`key`) from `start` to `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub lane: String,
    pub key: String,
    pub start: f64,
    pub end: f64,
}

/// What a figure draws.
#[derive(Debug, Clone, PartialEq)]
pub enum Plot {
    Lines(Vec<Series>),
    Bars(Vec<Bar>),
    /// Named sample sets binned over one shared range into `bins` bins; bars show the
    /// share of each set's samples per bin, so sets of different sizes compare.
    Histogram {
        sets: Vec<(String, Vec<f64>)>,
        bins: usize,
    },
    Timeline(Vec<Span>),
}

/// A chart with a title, labelled axes, a legend and a caption naming the machine.
///
/// ```
/// use conclab::lab::{Figure, Point, Series, Style};
/// let f = Figure::lines("Speedup", "threads", "speedup (×)")
///     .series(Series::new("measured", Style::Measured, vec![Point::spread(1.0, 1.0, 0.9, 1.1), Point::new(2.0, 1.9)]))
///     .series(Series::new("ideal", Style::Ideal, vec![Point::new(1.0, 1.0), Point::new(2.0, 2.0)]));
/// assert!(f.to_svg().contains("<svg"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub plot: Plot,
    pub legend: Legend,
    /// Shown under the plot; defaults to the machine card's caption.
    pub caption: String,
    /// Extra lines for the plain-text summary (findings in words).
    pub notes: Vec<String>,
    pub width: u32,
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
const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

impl Figure {
    fn new(title: &str, x_label: &str, y_label: &str, plot: Plot) -> Figure {
        Figure {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            plot,
            legend: Legend::UpperLeft,
            caption: MachineCard::current().caption(),
            notes: Vec::new(),
            width: 760,
            height: 440,
        }
    }

    /// An empty line chart.
    pub fn lines(title: &str, x_label: &str, y_label: &str) -> Figure {
        Figure::new(title, x_label, y_label, Plot::Lines(Vec::new()))
    }

    /// An empty grouped bar chart.
    pub fn bars(title: &str, x_label: &str, y_label: &str) -> Figure {
        Figure::new(title, x_label, y_label, Plot::Bars(Vec::new()))
    }

    /// An empty histogram with `bins` bins.
    pub fn histogram(title: &str, x_label: &str, bins: usize) -> Figure {
        Figure::new(title, x_label, "share of samples (%)", Plot::Histogram { sets: Vec::new(), bins: bins.max(1) })
    }

    /// An empty timeline (Gantt chart): one lane per thread or worker.
    pub fn timeline(title: &str, x_label: &str, lane_label: &str) -> Figure {
        Figure::new(title, x_label, lane_label, Plot::Timeline(Vec::new())).legend(Legend::LowerRight)
    }

    /// Adds a line series (line charts only; ignored elsewhere).
    pub fn series(mut self, s: Series) -> Figure {
        if let Plot::Lines(v) = &mut self.plot {
            v.push(s);
        }
        self
    }

    /// Adds a bar (bar charts only).
    pub fn bar(mut self, group: &str, series: &str, value: f64, spread: Option<(f64, f64)>) -> Figure {
        if let Plot::Bars(v) = &mut self.plot {
            v.push(Bar {
                group: group.into(),
                series: series.into(),
                value,
                lo: spread.map(|s| s.0),
                hi: spread.map(|s| s.1),
            });
        }
        self
    }

    /// Adds a sample set (histograms only).
    pub fn samples(mut self, name: &str, samples: Vec<f64>) -> Figure {
        if let Plot::Histogram { sets, .. } = &mut self.plot {
            sets.push((name.into(), samples));
        }
        self
    }

    /// Adds a span (timelines only).
    pub fn span(mut self, lane: &str, key: &str, start: f64, end: f64) -> Figure {
        if let Plot::Timeline(v) = &mut self.plot {
            v.push(Span { lane: lane.into(), key: key.into(), start, end });
        }
        self
    }

    pub fn log_x(mut self) -> Figure {
        self.x_scale = Scale::Log;
        self
    }

    pub fn log_y(mut self) -> Figure {
        self.y_scale = Scale::Log;
        self
    }

    pub fn legend(mut self, at: Legend) -> Figure {
        self.legend = at;
        self
    }

    pub fn caption(mut self, caption: impl Into<String>) -> Figure {
        self.caption = caption.into();
        self
    }

    /// Adds a line to the plain-text summary.
    pub fn note(mut self, line: impl Into<String>) -> Figure {
        self.notes.push(line.into());
        self
    }

    pub fn size(mut self, width: u32, height: u32) -> Figure {
        self.width = width.max(200);
        self.height = height.max(150);
        self
    }

    /// The figure as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let mut svg = String::new();
        let drawn = {
            let root = SVGBackend::with_string(&mut svg, (self.width, self.height)).into_drawing_area();
            self.draw(&root)
        };
        if let Err(e) = drawn {
            // A figure that cannot be drawn says so in its own place instead of panicking.
            svg = format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"60\"><text x=\"10\" y=\"30\">\
                 figure could not be drawn: {}</text></svg>",
                escape(&e.to_string()),
                w = self.width
            );
        }
        svg
    }

    /// Writes the SVG to `path`.
    pub fn save_svg(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_svg())
    }

    /// Plain-text summary: title, the data in words, the notes and the caption.
    pub fn summary(&self) -> String {
        let mut s = format!("{}\n", self.title);
        match &self.plot {
            Plot::Lines(series) => {
                for ser in series {
                    let pts: Vec<String> =
                        ser.points.iter().map(|p| format!("{}→{}", fmt_num(p.x), fmt_num(p.y))).collect();
                    let _ = writeln!(s, "  {} ({} vs {}): {}", ser.name, self.y_label, self.x_label, pts.join(", "));
                }
            }
            Plot::Bars(bars) => {
                for b in bars {
                    let spread = match (b.lo, b.hi) {
                        (Some(lo), Some(hi)) => format!(" ({}–{})", fmt_num(lo), fmt_num(hi)),
                        _ => String::new(),
                    };
                    let _ =
                        writeln!(s, "  {} / {}: {}{} {}", b.group, b.series, fmt_num(b.value), spread, self.y_label);
                }
            }
            Plot::Histogram { sets, .. } => {
                for (name, v) in sets {
                    let mut sorted = v.clone();
                    sorted.sort_by(f64::total_cmp);
                    if sorted.is_empty() {
                        continue;
                    }
                    let q = |p| fmt_num(crate::lab::timing::quantile_sorted(&sorted, p));
                    let _ = writeln!(
                        s,
                        "  {name}: {} samples of {}, p50 {}, p90 {}, p99 {}, max {}",
                        sorted.len(),
                        self.x_label,
                        q(0.5),
                        q(0.9),
                        q(0.99),
                        q(1.0)
                    );
                }
            }
            Plot::Timeline(spans) => {
                for lane in lanes(spans) {
                    let mine: Vec<String> = spans
                        .iter()
                        .filter(|sp| sp.lane == lane)
                        .map(|sp| format!("{} {}–{}", sp.key, fmt_num(sp.start), fmt_num(sp.end)))
                        .collect();
                    let _ = writeln!(s, "  {lane}: {}", mine.join(", "));
                }
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "{n}");
        }
        let _ = write!(s, "[{}]", self.caption);
        s
    }

    /// Shows the figure in a notebook: the SVG, with the summary as its plain-text form.
    pub fn evcxr_display(&self) {
        crate::lab::display::emit(&[("image/svg+xml", &self.to_svg()), ("text/plain", &self.summary())]);
    }

    fn draw(&self, root: &DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult {
        root.fill(&WHITE)?;
        let (plot_area, foot) = root.split_vertically(self.height as i32 - 22);
        foot.draw(&Text::new(self.caption.clone(), (12, 4), ("sans-serif", 12).into_font().color(&GREY)))?;
        let ((x0, x1), (y0, y1)) = self.bounds();
        let (xk, yk) = (self.x_ticks(x0, x1), self.y_ticks(y0, y1));
        let lane_names = match &self.plot {
            Plot::Timeline(spans) => lanes(spans),
            _ => Vec::new(),
        };
        let groups = match &self.plot {
            Plot::Bars(bars) => unique(bars.iter().map(|b| b.group.clone())),
            _ => Vec::new(),
        };
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(if lane_names.is_empty() { 72 } else { 130 })
            .build_cartesian_2d(Axis { lo: x0, hi: x1, keys: xk }, Axis { lo: y0, hi: y1, keys: yk })?;
        let x_fmt = |v: &f64| {
            if groups.is_empty() { fmt_tick(*v, self.x_scale) } else { label_at(&groups, *v) }
        };
        let y_fmt = |v: &f64| {
            if lane_names.is_empty() {
                fmt_tick(*v, self.y_scale)
            } else {
                label_at(&lane_names, lane_names.len() as f64 - 1.0 - v)
            }
        };
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        let tx = |x: f64| to_axis(x, self.x_scale);
        let ty = |y: f64| to_axis(y, self.y_scale);
        let mut legend = false;
        match &self.plot {
            Plot::Lines(series) => {
                let mut measured = 0;
                for s in series {
                    let pts: Vec<(f64, f64, Option<f64>, Option<f64>)> = s
                        .points
                        .iter()
                        .filter_map(|p| Some((tx(p.x)?, ty(p.y)?, p.lo.and_then(ty), p.hi.and_then(ty))))
                        .collect();
                    let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
                    let c = match s.style {
                        Style::Ideal => GREY,
                        _ => {
                            measured += 1;
                            color(measured - 1)
                        }
                    };
                    match s.style {
                        Style::Ideal => {
                            chart
                                .draw_series(DashedLineSeries::new(xy, 6, 4, c.stroke_width(2)))?
                                .label(&s.name)
                                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                        }
                        Style::Fit => {
                            chart
                                .draw_series(LineSeries::new(xy, c.stroke_width(1)))?
                                .label(&s.name)
                                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(1)));
                        }
                        Style::Measured | Style::ErrorBars => {
                            // (x, median, lo, hi)
                            let spread: Vec<(f64, f64, f64, f64)> =
                                pts.iter().filter_map(|p| Some((p.0, p.1, p.2?, p.3?))).collect();
                            if s.style == Style::Measured && spread.len() >= 2 {
                                let mut poly: Vec<(f64, f64)> = spread.iter().map(|p| (p.0, p.3)).collect();
                                poly.extend(spread.iter().rev().map(|p| (p.0, p.2)));
                                chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))?;
                            } else {
                                chart.draw_series(
                                    spread
                                        .iter()
                                        .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, c.stroke_width(1), 8)),
                                )?;
                            }
                            chart
                                .draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))?
                                .label(&s.name)
                                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                            chart.draw_series(xy.iter().map(|p| Circle::new(*p, 3, c.filled())))?;
                        }
                    }
                    legend = true;
                }
            }
            Plot::Bars(bars) => {
                let names = unique(bars.iter().map(|b| b.series.clone()));
                let base = if self.y_scale == Scale::Log { y0 } else { 0.0f64.max(y0) };
                // Within each group, the bars present share the group's width, so a group
                // with one bar is not left half empty.
                let slot = |b: &Bar| {
                    let present = unique(bars.iter().filter(|o| o.group == b.group).map(|o| o.series.clone()));
                    let k = present.iter().position(|x| x == &b.series).unwrap_or(0) as f64;
                    let w = 0.8 / present.len().max(1) as f64;
                    let g = groups.iter().position(|x| x == &b.group).unwrap_or(0) as f64;
                    let left = g - 0.4 + k * w;
                    (left, left + w * 0.9)
                };
                for (k, name) in names.iter().enumerate() {
                    let c = color(k);
                    let mut rects = Vec::new();
                    let mut errs = Vec::new();
                    for b in bars.iter().filter(|b| &b.series == name) {
                        let (left, right) = slot(b);
                        if let Some(v) = ty(b.value) {
                            rects.push(Rectangle::new([(left, base), (right, v)], c.filled()));
                        }
                        if let (Some(lo), Some(hi), Some(v)) = (b.lo.and_then(ty), b.hi.and_then(ty), ty(b.value)) {
                            // the whisker's dot sits on the bar's top: the median
                            errs.push(ErrorBar::new_vertical(
                                (left + right) / 2.0,
                                lo,
                                v,
                                hi,
                                BLACK.stroke_width(1),
                                6,
                            ));
                        }
                    }
                    chart
                        .draw_series(rects)?
                        .label(name)
                        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
                    chart.draw_series(errs)?;
                }
                legend = names.len() > 1;
            }
            Plot::Histogram { sets, bins } => {
                let edges = bin_edges(x0, x1, *bins);
                for (k, (name, samples)) in sets.iter().enumerate() {
                    let c = color(k);
                    let shares = bin_shares(samples, &edges, self.x_scale);
                    let rects: Vec<_> = shares
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| **s > 0.0)
                        .map(|(i, s)| Rectangle::new([(edges[i], 0.0), (edges[i + 1], *s)], c.mix(0.45).filled()))
                        .collect();
                    chart
                        .draw_series(rects)?
                        .label(name)
                        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.mix(0.45).filled()));
                    let mut outline = vec![(edges[0], 0.0)];
                    for (i, s) in shares.iter().enumerate() {
                        outline.push((edges[i], *s));
                        outline.push((edges[i + 1], *s));
                    }
                    outline.push((edges[edges.len() - 1], 0.0));
                    chart.draw_series(LineSeries::new(outline, c.stroke_width(1)))?;
                }
                legend = true;
            }
            Plot::Timeline(spans) => {
                let keys = unique(spans.iter().map(|s| s.key.clone()));
                let last = lane_names.len() as f64 - 1.0;
                for (k, key) in keys.iter().enumerate() {
                    let c = color(k);
                    let rects: Vec<_> = spans
                        .iter()
                        .filter(|s| &s.key == key)
                        .filter_map(|s| {
                            let y = last - lane_names.iter().position(|l| l == &s.lane)? as f64;
                            Some(Rectangle::new(
                                [(tx(s.start)?, y - 0.35), (tx(s.end)?, y + 0.35)],
                                c.mix(0.85).filled(),
                            ))
                        })
                        .collect();
                    let series = chart.draw_series(rects)?;
                    if keys.len() <= 12 {
                        series
                            .label(key)
                            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
                    }
                }
                legend = keys.len() <= 12;
            }
        }
        if legend {
            let pos = match self.legend {
                Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
                Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
                Legend::LowerRight => SeriesLabelPosition::LowerRight,
                Legend::MiddleRight => SeriesLabelPosition::MiddleRight,
            };
            chart
                .configure_series_labels()
                .position(pos)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(0xcc, 0xcc, 0xcc))
                .label_font(("sans-serif", 13))
                .draw()?;
        }
        root.present()?;
        Ok(())
    }

    /// Axis ranges in drawing coordinates (log10 of the value on a log axis).
    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        match &self.plot {
            Plot::Lines(series) => {
                for p in series.iter().flat_map(|s| &s.points) {
                    xs.push(p.x);
                    ys.extend([Some(p.y), p.lo, p.hi].into_iter().flatten());
                }
            }
            Plot::Bars(bars) => {
                let n = unique(bars.iter().map(|b| b.group.clone())).len();
                let lows = bars.iter().flat_map(|b| [Some(b.value), b.lo, b.hi]).flatten();
                ys.extend(lows);
                let y = pad(axis_values(&ys, self.y_scale), self.y_scale == Scale::Linear);
                return ((-0.6, n as f64 - 0.4), y);
            }
            Plot::Histogram { sets, bins } => {
                xs.extend(sets.iter().flat_map(|(_, v)| v.iter().copied()));
                let x = axis_values(&xs, self.x_scale);
                let x = if x.1 > x.0 { x } else { (x.0 - 0.5, x.1 + 0.5) };
                let edges = bin_edges(x.0, x.1, *bins);
                let top = sets.iter().flat_map(|(_, v)| bin_shares(v, &edges, self.x_scale)).fold(1.0f64, f64::max);
                return (x, (0.0, top * 1.08));
            }
            Plot::Timeline(spans) => {
                xs.extend(spans.iter().flat_map(|s| [s.start, s.end]));
                let n = lanes(spans).len().max(1) as f64;
                return (pad(axis_values(&xs, self.x_scale), false), (-0.6, n - 0.4));
            }
        }
        (pad(axis_values(&xs, self.x_scale), false), pad(axis_values(&ys, self.y_scale), self.y_scale == Scale::Linear))
    }

    fn x_ticks(&self, lo: f64, hi: f64) -> Vec<f64> {
        match &self.plot {
            Plot::Bars(bars) => (0..unique(bars.iter().map(|b| b.group.clone())).len()).map(|i| i as f64).collect(),
            _ => ticks(lo, hi, self.x_scale),
        }
    }

    fn y_ticks(&self, lo: f64, hi: f64) -> Vec<f64> {
        match &self.plot {
            Plot::Timeline(spans) => (0..lanes(spans).len()).map(|i| i as f64).collect(),
            _ => ticks(lo, hi, self.y_scale),
        }
    }
}

/// A linear axis over `lo..hi` whose ticks are exactly `keys` (so log axes, bar groups
/// and timeline lanes get the ticks they need, and one chart type serves every figure).
struct Axis {
    lo: f64,
    hi: f64,
    keys: Vec<f64>,
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let r = if self.hi > self.lo { (value - self.lo) / (self.hi - self.lo) } else { 0.5 };
        limit.0 + (r * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Grid lines only at the ticks: the "light" (minor) request gets none.
        if hint.weight().allow_light_points() { Vec::new() } else { self.keys.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Maps a value to its axis coordinate; `None` for values a log axis cannot show.
fn to_axis(v: f64, scale: Scale) -> Option<f64> {
    match scale {
        Scale::Linear if v.is_finite() => Some(v),
        Scale::Log if v > 0.0 && v.is_finite() => Some(v.log10()),
        _ => None,
    }
}

/// Min and max of the values in axis coordinates (a unit range when there are none).
fn axis_values(values: &[f64], scale: Scale) -> (f64, f64) {
    let t: Vec<f64> = values.iter().filter_map(|v| to_axis(*v, scale)).collect();
    if t.is_empty() {
        return (0.0, 1.0);
    }
    let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Adds 6% head room on both sides; a linear axis of non-negative values starts at 0.
fn pad((lo, hi): (f64, f64), from_zero: bool) -> (f64, f64) {
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) * 0.5 };
    let lo2 = if from_zero && lo >= 0.0 { 0.0 } else { lo - span * 0.06 };
    (lo2, hi + span * 0.06)
}

/// Tick positions (axis coordinates): "nice" steps on a linear axis, 1-2-5 decades on a
/// log axis.
fn ticks(lo: f64, hi: f64, scale: Scale) -> Vec<f64> {
    match scale {
        Scale::Linear => {
            let raw = (hi - lo) / 6.0;
            if raw <= 0.0 || !raw.is_finite() {
                return vec![lo];
            }
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
            let mut t = Vec::new();
            let mut v = (lo / step).ceil() * step;
            while v <= hi + step * 1e-9 {
                t.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
                v += step;
            }
            t
        }
        Scale::Log => {
            let decades = (hi.ceil() - lo.floor()) as i32;
            let mults: &[f64] = if decades <= 2 {
                &[1.0, 2.0, 5.0]
            } else if decades <= 4 {
                &[1.0, 3.0]
            } else {
                &[1.0]
            };
            let step = if decades > 8 { 2 } else { 1 };
            let mut t = Vec::new();
            let mut d = lo.floor() as i32;
            while d <= hi.ceil() as i32 {
                for m in mults {
                    let v = d as f64 + m.log10();
                    if v >= lo - 1e-9 && v <= hi + 1e-9 {
                        t.push(v);
                    }
                }
                d += step;
            }
            t
        }
    }
}

fn fmt_tick(v: f64, scale: Scale) -> String {
    match scale {
        Scale::Linear => fmt_num(v),
        Scale::Log => fmt_num(10f64.powf(v)),
    }
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

fn label_at(labels: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn lanes(spans: &[Span]) -> Vec<String> {
    unique(spans.iter().map(|s| s.lane.clone()))
}

fn bin_edges(lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let bins = bins.max(1);
    (0..=bins).map(|i| lo + (hi - lo) * i as f64 / bins as f64).collect()
}

/// Percentage of `samples` in each bin between consecutive `edges` (axis coordinates).
fn bin_shares(samples: &[f64], edges: &[f64], scale: Scale) -> Vec<f64> {
    let bins = edges.len() - 1;
    let mut counts = vec![0usize; bins];
    let (lo, hi) = (edges[0], edges[bins]);
    let mut n = 0usize;
    for v in samples.iter().filter_map(|v| to_axis(*v, scale)) {
        n += 1;
        let i = if hi > lo { (((v - lo) / (hi - lo)) * bins as f64).floor() as isize } else { 0 };
        counts[i.clamp(0, bins as isize - 1) as usize] += 1;
    }
    counts.iter().map(|c| if n == 0 { 0.0 } else { 100.0 * *c as f64 / n as f64 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// plotters writes each text element's content on a line of its own.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.lines().any(|l| l.trim() == text)
    }

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
    fn linear_ticks_are_nice() {
        assert_eq!(ticks(0.0, 10.0, Scale::Linear), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.0, 1.0, Scale::Linear);
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn log_ticks_land_on_decades() {
        let t: Vec<String> = ticks(0.0, 4.0, Scale::Log).iter().map(|v| fmt_tick(*v, Scale::Log)).collect();
        assert_eq!(t.first().map(String::as_str), Some("1"));
        assert!(t.contains(&"1000".to_string()), "{t:?}");
    }

    #[test]
    fn histogram_shares_sum_to_100() {
        let edges = bin_edges(0.0, 10.0, 5);
        let s = bin_shares(&[0.0, 1.0, 5.0, 9.9, 10.0], &edges, Scale::Linear);
        assert_eq!(s.len(), 5);
        assert!((s.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        assert_eq!(s[0], 40.0);
        assert_eq!(s[4], 40.0);
    }

    #[test]
    fn every_kind_renders_an_svg_with_title_and_labels() {
        let figs = [
            Figure::lines("L", "threads", "µs")
                .log_x()
                .series(Series::new(
                    "a",
                    Style::Measured,
                    vec![Point::spread(1.0, 2.0, 1.5, 2.5), Point::spread(10.0, 3.0, 2.0, 4.0)],
                ))
                .series(Series::new("ideal", Style::Ideal, vec![Point::new(1.0, 1.0), Point::new(10.0, 10.0)])),
            Figure::bars("B", "mode", "ops/s").bar("x", "s1", 3.0, Some((2.0, 4.0))).bar("y", "s2", 5.0, None),
            Figure::histogram("H", "latency (µs)", 20).log_x().samples("a", vec![1.0, 2.0, 3.0, 50.0]),
            Figure::timeline("T", "time (ms)", "thread").span("t1", "task 0", 0.0, 1.0).span("t2", "task 1", 0.5, 2.0),
        ];
        for f in figs {
            let svg = f.to_svg();
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(has_text(&svg, &f.title), "title missing in {}", f.title);
            assert!(!svg.contains("could not be drawn"), "{svg}");
            assert!(f.summary().contains(&f.title));
        }
    }

    #[test]
    fn timeline_labels_lanes_and_bars_label_groups() {
        let svg = Figure::timeline("T", "ms", "thread").span("worker-7", "k", 0.0, 1.0).to_svg();
        assert!(has_text(&svg, "worker-7"));
        let svg = Figure::bars("B", "mode", "v").bar("mutex", "s", 1.0, None).bar("atomic", "s", 2.0, None).to_svg();
        assert!(has_text(&svg, "mutex") && has_text(&svg, "atomic"));
    }

    #[test]
    fn log_axis_drops_non_positive_values() {
        let f = Figure::lines("L", "x", "y").log_y().series(Series::new(
            "a",
            Style::Measured,
            vec![Point::new(1.0, 0.0), Point::new(2.0, 10.0)],
        ));
        assert!(!f.to_svg().contains("could not be drawn"));
    }
}
