//! Line charts: measured series with a p25–p75 band or error bars, ideal and fitted lines;
//! optionally split into side-by-side panels ([`crate::lab::Figure::panel`]) that share
//! the scales, the legend and the colour of each series name.

use super::axes::{self, AxisSpec, DrawResult, Rect, Scale};
use super::legend::{Entry, Swatch};
use super::text::{self, BODY_PX, GREY, LINE_PX, fmt_num};
use super::{Ctx, color};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

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

    /// The median of `stats` at `x`, with its quartiles as the spread.
    pub fn quartiles(x: f64, stats: &crate::lab::Stats) -> Point {
        Point::spread(x, stats.median, stats.p25, stats.p75)
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
    /// Measured data drawn with error bars (stem and caps) instead of a band.
    ErrorBars,
    /// A limit or ideal (ideal speedup, requested sleep): dashed grey line.
    Ideal,
    /// A fitted model: thin line without markers.
    Fit,
    /// Another machine's run of the same experiment ([`crate::lab::Figure::with_reference`]):
    /// a faded line with small markers, in the colour of the series it is named after
    /// (`"<series> · <machine>"`).
    Reference,
}

/// A named line series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
    pub style: Style,
    /// The panel it is drawn in (an index into [`Lines::panels`]; 0 without panels).
    pub panel: usize,
}

impl Series {
    pub fn new(name: impl Into<String>, style: Style, points: Vec<Point>) -> Series {
        Series { name: name.into(), points, style, panel: 0 }
    }
}

/// The data of a line chart: its series, drawn in order (later ones on top).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lines {
    pub series: Vec<Series>,
    /// Titles of side-by-side panels, left to right; empty for one plot without a title.
    /// Each panel has its own axis ranges; scales, legend and colours are shared, so a
    /// series name keeps its colour in every panel.
    pub panels: Vec<String>,
}

/// Every second (third, …) of `ticks` when their labels would not fit side by side in
/// `width` pixels with some space between them (a narrow panel with many decades).
fn fitting(ticks: Vec<f64>, label: &dyn Fn(f64) -> String, width: f64) -> Vec<f64> {
    let need = |t: &[f64]| t.iter().map(|v| text::width(&label(*v), BODY_PX) + 14.0).sum::<f64>();
    let mut step = 1;
    loop {
        let kept: Vec<f64> = ticks.iter().copied().step_by(step).collect();
        if kept.len() <= 2 || need(&kept) <= width {
            return kept;
        }
        step += 1;
    }
}

impl Lines {
    /// The scales to draw with: [`Scale::Auto`] resolved from the data.
    /// A reference run's lines do not decide it: the reader's own data do.
    pub(crate) fn scales(&self, x: Scale, y: Scale) -> (Scale, Scale) {
        let pts = || self.series.iter().filter(|s| s.style != Style::Reference).flat_map(|s| &s.points);
        let xs = if x == Scale::Auto { axes::auto_scale(pts().map(|p| p.x)) } else { x };
        let ys = if y == Scale::Auto { axes::auto_scale(pts().map(|p| p.y)) } else { y };
        (xs, ys)
    }

    /// Colour per series: measured and fitted series take palette colours in order of
    /// their names' first appearance (a name repeated in another panel keeps its colour),
    /// ideal lines are grey, and a reference series (`"<series> · <machine>"`) takes its
    /// base series' colour, faded.
    pub(crate) fn colors(&self) -> Vec<RGBColor> {
        let mut names: Vec<&str> = Vec::new();
        self.series
            .iter()
            .map(|s| {
                if s.style == Style::Ideal {
                    return GREY;
                }
                // A reference series takes the colour of the series it repeats.
                let name = if s.style == Style::Reference { reference_parts(&s.name).0 } else { s.name.as_str() };
                let k = names.iter().position(|n| *n == name).unwrap_or_else(|| {
                    names.push(name);
                    names.len() - 1
                });
                if s.style == Style::Reference { faded(color(k)) } else { color(k) }
            })
            .collect()
    }

    /// How many plots are drawn side by side (at least 1).
    fn panel_count(&self) -> usize {
        self.panels.len().max(1)
    }

    pub(crate) fn legend(&self) -> Vec<Entry> {
        let mut seen: Vec<&str> = Vec::new();
        let mut order: Vec<(&Series, RGBColor)> = self.series.iter().zip(self.colors()).collect();
        if !self.panels.is_empty() {
            // Panels add their ideal lines as they go: list the measured names first.
            order.sort_by_key(|(s, _)| s.style == Style::Ideal);
        }
        // A reference run gets one entry, "faded: <machine>": its lines repeat the reader's
        // names in their colours.
        let reference =
            self.series.iter().find(|s| s.style == Style::Reference).map(|s| reference_parts(&s.name).1.to_string());
        let mut entries: Vec<Entry> = order
            .into_iter()
            .filter(|(s, _)| s.style != Style::Reference)
            .filter(|(s, _)| {
                let new = !seen.contains(&s.name.as_str());
                seen.push(&s.name);
                new
            })
            .map(|(s, c)| Entry {
                name: s.name.clone(),
                swatch: match s.style {
                    Style::Ideal => Swatch::Line { color: c, width: 2, dashed: true },
                    Style::Fit | Style::Reference => Swatch::Line { color: c, width: 2, dashed: false },
                    Style::Measured | Style::ErrorBars => Swatch::Marked(c),
                },
            })
            .collect();
        if let Some(machine) = reference {
            entries.push(Entry {
                name: format!("faded: the same lines on {machine}"),
                swatch: Swatch::Line { color: faded(text::INK), width: 2, dashed: false },
            });
        }
        entries
    }

    /// Axis ranges in axis coordinates of one panel's series.
    fn bounds(&self, cx: &Ctx<'_>, panel: usize) -> ((f64, f64), (f64, f64)) {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        let many = self.panels.len() > 1;
        for p in self.series.iter().filter(|s| !many || s.panel == panel).flat_map(|s| &s.points) {
            xs.push(p.x);
            ys.extend([Some(p.y), p.lo, p.hi].into_iter().flatten());
        }
        (
            axes::pad(axes::axis_values(&xs, cx.x_scale), false),
            axes::pad(axes::axis_values(&ys, cx.y_scale), cx.y_scale == Scale::Linear),
        )
    }

    pub(crate) fn y_area(&self, cx: &Ctx<'_>) -> u32 {
        let mut labels: Vec<String> = Vec::new();
        for panel in 0..self.panel_count() {
            let (_, (y0, y1)) = self.bounds(cx, panel);
            labels.extend(axes::ticks(y0, y1, cx.y_scale, 6).iter().map(|v| axes::fmt_tick(*v, cx.y_scale)));
        }
        axes::y_area_for(labels.iter().map(String::as_str))
    }

    pub(crate) fn draw(&self, cx: &Ctx<'_>, area: &axes::Area<'_>) -> DrawResult<Vec<Rect>> {
        if self.panels.is_empty() {
            return Ok(vec![self.draw_panel(cx, area, 0, 6, true)?]);
        }
        let mut rects = Vec::new();
        let areas = area.split_evenly((1, self.panels.len()));
        // The x title under each panel, or once under them all where it is wider than a
        // panel's plot (three narrow panels would write their titles over each other).
        let (w, h) = area.dim_in_pixel();
        let shared_title = text::width(&cx.fig.x_label, BODY_PX) > plot_width(cx, w as f64 / self.panels.len() as f64);
        for (i, (panel_area, title)) in areas.iter().zip(&self.panels).enumerate() {
            let (head, body) = panel_area.split_vertically(LINE_PX + 6);
            let style = text::font(BODY_PX).style(FontStyle::Bold).color(&text::INK);
            head.draw(&Text::new(title.clone(), (12 + cx.y_area as i32, 4), style))?;
            let ticks = if self.panels.len() > 2 { 3 } else { 4 };
            rects.push(self.draw_panel(cx, &body, i, ticks, !shared_title)?);
        }
        if shared_title {
            let style = text::font(BODY_PX).color(&text::INK).pos(Pos::new(HPos::Center, VPos::Bottom));
            let mid = (cx.y_area as i32 + 12 + w as i32 - 24) / 2;
            area.draw(&Text::new(cx.fig.x_label.clone(), (mid, h as i32 - 4), style))?;
        }
        Ok(rects)
    }

    fn draw_panel(
        &self,
        cx: &Ctx<'_>,
        area: &axes::Area<'_>,
        panel: usize,
        x_ticks: usize,
        x_title: bool,
    ) -> DrawResult<Rect> {
        let ((x0, x1), (y0, y1)) = self.bounds(cx, panel);
        let (xs, ys) = (cx.x_scale, cx.y_scale);
        let xl = |v: f64| axes::fmt_tick(v, xs);
        let yl = |v: f64| axes::fmt_tick(v, ys);
        let x_ticks = fitting(axes::ticks(x0, x1, xs, x_ticks), &xl, plot_width(cx, area.dim_in_pixel().0 as f64));
        let desc = if x_title { cx.fig.x_label.as_str() } else { "" };
        let x = AxisSpec { lo: x0, hi: x1, ticks: x_ticks, label: &xl, desc };
        let y = AxisSpec { lo: y0, hi: y1, ticks: axes::ticks(y0, y1, ys, 6), label: &yl, desc: "" };
        let mut chart = axes::chart(area, &x, &y, cx.y_area, 58)?;
        let tx = |v: f64| axes::to_axis(v, xs);
        let ty = |v: f64| axes::to_axis(v, ys);
        let many = self.panels.len() > 1;
        // A reference run first, so the reader's own lines are drawn over it.
        let mut drawn: Vec<(&Series, RGBColor)> = self.series.iter().zip(self.colors()).collect();
        drawn.sort_by_key(|(s, _)| s.style != Style::Reference);
        for (s, c) in drawn.into_iter().filter(|(s, _)| !many || s.panel == panel) {
            let pts: Vec<(f64, f64, Option<f64>, Option<f64>)> = s
                .points
                .iter()
                .filter_map(|p| Some((tx(p.x)?, ty(p.y)?, p.lo.and_then(ty), p.hi.and_then(ty))))
                .collect();
            let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
            match s.style {
                Style::Ideal => {
                    chart.draw_series(DashedLineSeries::new(xy, 6, 4, c.stroke_width(2)))?;
                }
                Style::Fit => {
                    chart.draw_series(LineSeries::new(xy, c.stroke_width(2)))?;
                }
                Style::Reference => {
                    chart.draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))?;
                    chart.draw_series(xy.iter().map(|p| Circle::new(*p, 2, c.filled())))?;
                }
                Style::Measured | Style::ErrorBars => {
                    // (x, lo, hi) where the point carries a spread
                    let spread: Vec<(f64, f64, f64)> = pts.iter().filter_map(|p| Some((p.0, p.2?, p.3?))).collect();
                    if s.style == Style::Measured && spread.len() >= 2 {
                        let mut poly: Vec<(f64, f64)> = spread.iter().map(|p| (p.0, p.2)).collect();
                        poly.extend(spread.iter().rev().map(|p| (p.0, p.1)));
                        chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))?;
                    } else {
                        axes::whiskers(&mut chart, &spread, c)?;
                    }
                    chart.draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))?;
                    chart.draw_series(xy.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
                }
            }
        }
        Ok(axes::plot_rect(&chart))
    }

    pub(crate) fn summary(&self, cx: &Ctx<'_>, s: &mut String) {
        let f = cx.fig;
        for ser in &self.series {
            let pts: Vec<String> = ser.points.iter().map(|p| format!("{}→{}", fmt_num(p.x), fmt_num(p.y))).collect();
            let panel = match self.panels.get(ser.panel) {
                Some(title) => format!("[{title}] "),
                None => String::new(),
            };
            let _ = writeln!(s, "  {panel}{} ({} vs {}): {}", ser.name, f.y_label, f.x_label, pts.join(", "));
        }
        let log: Vec<&str> = [("x", cx.x_scale), ("y", cx.y_scale)]
            .iter()
            .filter(|(_, sc)| *sc == Scale::Log)
            .map(|(a, _)| *a)
            .collect();
        if !log.is_empty() {
            let _ = writeln!(s, "  (log scale on {})", log.join(" and "));
        }
    }
}

/// The plot's width in an area `area_w` pixels wide: less the y tick labels and the
/// chart's side margins.
fn plot_width(cx: &Ctx<'_>, area_w: f64) -> f64 {
    area_w - cx.y_area as f64 - 36.0
}

/// How a reference series is named: `"<series>` + [`REFERENCE_SEP`] + `<machine>"`.
pub(crate) const REFERENCE_SEP: &str = " · ";

/// A reference series' name split into the series it repeats and the machine that made it.
fn reference_parts(name: &str) -> (&str, &str) {
    name.rsplit_once(REFERENCE_SEP).unwrap_or((name, name))
}

/// A colour mixed 60 % towards white: a reference run drawn behind the reader's own.
fn faded(c: RGBColor) -> RGBColor {
    let f = |v: u8| (v as f64 + (255.0 - v as f64) * 0.6).round() as u8;
    RGBColor(f(c.0), f(c.1), f(c.2))
}
