//! Grouped bar charts: groups along x, one colour per series, whiskers for the spread.
//!
//! On a log y axis the values are drawn as dots, not bars: a bar's length on a log axis
//! depends on where the axis happens to start, so a bar half as tall would not mean half
//! the value. A dot's height reads the same on either axis.

use super::axes::{self, AxisSpec, DrawResult, Rect, Scale};
use super::legend::{Entry, Swatch};
use super::text::{self, BODY_PX, LINE_PX, fmt_num};
use super::{Ctx, color, unique};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

/// One bar: its group on the x axis, its series (colour), and its value with spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub group: String,
    pub series: String,
    pub value: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// The data of a grouped bar chart, in the order the bars were added.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bars {
    pub bars: Vec<Bar>,
}

/// What a log-scale bar chart says about its dots, in the figure and its summary.
pub(crate) const LOG_NOTE: &str =
    "Log scale: dots mark the values (a bar's length on a log axis would not be proportional to its value).";

impl Bars {
    fn groups(&self) -> Vec<String> {
        unique(self.bars.iter().map(|b| b.group.clone()))
    }

    fn names(&self) -> Vec<String> {
        unique(self.bars.iter().map(|b| b.series.clone()))
    }

    pub(crate) fn legend(&self, cx: &Ctx<'_>) -> Vec<Entry> {
        let names = self.names();
        if names.len() < 2 {
            return Vec::new();
        }
        names
            .into_iter()
            .enumerate()
            .map(|(k, name)| Entry {
                name,
                swatch: if cx.y_scale == Scale::Log { Swatch::Dot(color(k)) } else { Swatch::Box(color(k), 1.0) },
            })
            .collect()
    }

    pub(crate) fn notes(&self, cx: &Ctx<'_>) -> Vec<String> {
        if cx.y_scale == Scale::Log { vec![LOG_NOTE.to_string()] } else { Vec::new() }
    }

    fn y_bounds(&self, cx: &Ctx<'_>) -> (f64, f64) {
        let ys: Vec<f64> = self.bars.iter().flat_map(|b| [Some(b.value), b.lo, b.hi]).flatten().collect();
        axes::pad(axes::axis_values(&ys, cx.y_scale), cx.y_scale == Scale::Linear)
    }

    pub(crate) fn y_area(&self, cx: &Ctx<'_>) -> u32 {
        let (y0, y1) = self.y_bounds(cx);
        let labels: Vec<String> =
            axes::ticks(y0, y1, cx.y_scale, 6).iter().map(|v| axes::fmt_tick(*v, cx.y_scale)).collect();
        axes::y_area_for(labels.iter().map(String::as_str))
    }

    /// Group labels wrapped to the width of their group.
    fn group_labels(&self, cx: &Ctx<'_>) -> Vec<Vec<String>> {
        let groups = self.groups();
        let plot_w = (cx.width - cx.y_area as i32 - 36).max(100) as f64;
        let slot = plot_w / groups.len().max(1) as f64 - 8.0;
        groups.iter().map(|g| text::wrap(g, BODY_PX, slot.max(40.0))).collect()
    }

    fn x_area(&self, cx: &Ctx<'_>) -> u32 {
        let lines = self.group_labels(cx).iter().map(Vec::len).max().unwrap_or(1).max(1) as i32;
        (lines * LINE_PX + 40) as u32
    }

    pub(crate) fn draw(&self, cx: &Ctx<'_>, area: &axes::Area<'_>) -> DrawResult<Vec<Rect>> {
        let groups = self.groups();
        let names = self.names();
        let log = cx.y_scale == Scale::Log;
        let (y0, y1) = self.y_bounds(cx);
        let blank = |_: f64| String::new();
        let yl = |v: f64| axes::fmt_tick(v, cx.y_scale);
        let gticks: Vec<f64> = (0..groups.len()).map(|i| i as f64).collect();
        let x =
            AxisSpec { lo: -0.5, hi: groups.len() as f64 - 0.5, ticks: gticks, label: &blank, desc: &cx.fig.x_label };
        let y = AxisSpec { lo: y0, hi: y1, ticks: axes::ticks(y0, y1, cx.y_scale, 6), label: &yl, desc: "" };
        let mut chart = axes::chart(area, &x, &y, cx.y_area, self.x_area(cx))?;
        let ty = |v: f64| axes::to_axis(v, cx.y_scale);
        // Within each group the bars present share the group's width, so a group with
        // one bar is not left half empty.
        let slot = |b: &Bar| {
            let present = unique(self.bars.iter().filter(|o| o.group == b.group).map(|o| o.series.clone()));
            let k = present.iter().position(|x| x == &b.series).unwrap_or(0) as f64;
            let w = 0.8 / present.len().max(1) as f64;
            let g = groups.iter().position(|x| x == &b.group).unwrap_or(0) as f64;
            let left = g - 0.4 + k * w;
            (left, left + w * 0.9)
        };
        let base = 0.0f64.max(y0);
        for (k, name) in names.iter().enumerate() {
            let c = color(k);
            let mut rects = Vec::new();
            let mut dots = Vec::new();
            let mut errs = Vec::new();
            for b in self.bars.iter().filter(|b| &b.series == name) {
                let (left, right) = slot(b);
                let mid = (left + right) / 2.0;
                let Some(v) = ty(b.value) else { continue };
                if log {
                    dots.push(Circle::new((mid, v), 6, c.filled()));
                } else {
                    rects.push(Rectangle::new([(left, base), (right, v)], c.filled()));
                }
                if let (Some(lo), Some(hi)) = (b.lo.and_then(ty), b.hi.and_then(ty)) {
                    errs.push((mid, lo, hi));
                }
            }
            chart.draw_series(rects)?;
            let ink = if log { c } else { text::INK };
            axes::whiskers(&mut chart, &errs, ink)?;
            chart.draw_series(dots)?;
        }
        // Group labels, wrapped, centred under their groups.
        let (bx, by) = area.get_base_pixel();
        for (g, lines) in self.group_labels(cx).iter().enumerate() {
            let (px, py) = chart.backend_coord(&(g as f64, y0));
            for (i, line) in lines.iter().enumerate() {
                let style = text::font(BODY_PX).color(&text::INK).pos(Pos::new(HPos::Center, VPos::Top));
                area.draw(&Text::new(line.clone(), (px - bx, py - by + 8 + i as i32 * LINE_PX), style))?;
            }
        }
        Ok(vec![axes::plot_rect(&chart)])
    }

    pub(crate) fn summary(&self, cx: &Ctx<'_>, s: &mut String) {
        for b in &self.bars {
            let spread = match (b.lo, b.hi) {
                (Some(lo), Some(hi)) => format!(" ({}–{})", fmt_num(lo), fmt_num(hi)),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {} / {}: {}{} {}", b.group, b.series, fmt_num(b.value), spread, cx.fig.y_label);
        }
    }
}
