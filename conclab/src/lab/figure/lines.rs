//! Line charts: measured series with a p25–p75 band or error bars, ideal and fitted lines.

use super::axes::{self, AxisSpec, DrawResult, Rect, Scale};
use super::legend::{Entry, Swatch};
use super::text::{GREY, fmt_num};
use super::{Ctx, color};
use plotters::prelude::*;
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

/// The data of a line chart: its series, drawn in order (later ones on top).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lines {
    pub series: Vec<Series>,
}

impl Lines {
    /// The scales to draw with: [`Scale::Auto`] resolved from the data.
    pub(crate) fn scales(&self, x: Scale, y: Scale) -> (Scale, Scale) {
        let pts = || self.series.iter().flat_map(|s| &s.points);
        let xs = if x == Scale::Auto { axes::auto_scale(pts().map(|p| p.x)) } else { x };
        let ys = if y == Scale::Auto { axes::auto_scale(pts().map(|p| p.y)) } else { y };
        (xs, ys)
    }

    /// Colour per series: measured and fitted series take palette colours in order,
    /// ideal lines are grey.
    fn colors(&self) -> Vec<RGBColor> {
        let mut k = 0;
        self.series
            .iter()
            .map(|s| match s.style {
                Style::Ideal => GREY,
                _ => {
                    k += 1;
                    color(k - 1)
                }
            })
            .collect()
    }

    pub(crate) fn legend(&self) -> Vec<Entry> {
        self.series
            .iter()
            .zip(self.colors())
            .map(|(s, c)| Entry {
                name: s.name.clone(),
                swatch: match s.style {
                    Style::Ideal => Swatch::Line { color: c, width: 2, dashed: true },
                    Style::Fit => Swatch::Line { color: c, width: 2, dashed: false },
                    Style::Measured | Style::ErrorBars => Swatch::Marked(c),
                },
            })
            .collect()
    }

    /// Axis ranges in axis coordinates.
    fn bounds(&self, cx: &Ctx<'_>) -> ((f64, f64), (f64, f64)) {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for p in self.series.iter().flat_map(|s| &s.points) {
            xs.push(p.x);
            ys.extend([Some(p.y), p.lo, p.hi].into_iter().flatten());
        }
        (
            axes::pad(axes::axis_values(&xs, cx.x_scale), false),
            axes::pad(axes::axis_values(&ys, cx.y_scale), cx.y_scale == Scale::Linear),
        )
    }

    pub(crate) fn y_area(&self, cx: &Ctx<'_>) -> u32 {
        let (_, (y0, y1)) = self.bounds(cx);
        let labels: Vec<String> =
            axes::ticks(y0, y1, cx.y_scale, 6).iter().map(|v| axes::fmt_tick(*v, cx.y_scale)).collect();
        axes::y_area_for(labels.iter().map(String::as_str))
    }

    pub(crate) fn draw(&self, cx: &Ctx<'_>, area: &axes::Area<'_>) -> DrawResult<Vec<Rect>> {
        let ((x0, x1), (y0, y1)) = self.bounds(cx);
        let (xs, ys) = (cx.x_scale, cx.y_scale);
        let xl = |v: f64| axes::fmt_tick(v, xs);
        let yl = |v: f64| axes::fmt_tick(v, ys);
        let x = AxisSpec { lo: x0, hi: x1, ticks: axes::ticks(x0, x1, xs, 6), label: &xl, desc: &cx.fig.x_label };
        let y = AxisSpec { lo: y0, hi: y1, ticks: axes::ticks(y0, y1, ys, 6), label: &yl, desc: "" };
        let mut chart = axes::chart(area, &x, &y, cx.y_area, 58)?;
        let tx = |v: f64| axes::to_axis(v, xs);
        let ty = |v: f64| axes::to_axis(v, ys);
        for (s, c) in self.series.iter().zip(self.colors()) {
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
        Ok(vec![axes::plot_rect(&chart)])
    }

    pub(crate) fn summary(&self, cx: &Ctx<'_>, s: &mut String) {
        let f = cx.fig;
        for ser in &self.series {
            let pts: Vec<String> = ser.points.iter().map(|p| format!("{}→{}", fmt_num(p.x), fmt_num(p.y))).collect();
            let _ = writeln!(s, "  {} ({} vs {}): {}", ser.name, f.y_label, f.x_label, pts.join(", "));
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
