//! Histograms: named sample sets binned over one shared range, drawn as small multiples
//! (one panel per set, stacked, same x axis and same y scale), so no set can hide
//! another. Bars show each set's share of samples per bin, so sets of different sizes
//! compare.

use super::axes::{self, AxisSpec, DrawResult, Rect};
use super::text::{self, BODY_PX, fmt_num};
use super::{Ctx, color};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

/// The data of a histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub sets: Vec<(String, Vec<f64>)>,
    pub bins: usize,
}

/// Height of a panel's name row above its plot.
const LABEL_H: i32 = 22;
/// Height under the last panel for tick labels and the axis title.
const X_AREA: i32 = 58;
/// The smallest plot height of a panel.
const MIN_PANEL: i32 = 110;

impl Histogram {
    fn x_bounds(&self, cx: &Ctx<'_>) -> (f64, f64) {
        let xs: Vec<f64> = self.sets.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let x = axes::axis_values(&xs, cx.x_scale);
        // a little room either side, so the outermost bins do not sit on the axes
        if x.1 > x.0 { axes::pad(x, false) } else { (x.0 - 0.5, x.1 + 0.5) }
    }

    fn shares(&self, cx: &Ctx<'_>) -> (Vec<f64>, Vec<Vec<f64>>) {
        let (x0, x1) = self.x_bounds(cx);
        let edges = bin_edges(x0, x1, self.bins);
        let shares = self.sets.iter().map(|(_, v)| bin_shares(v, &edges, cx.x_scale)).collect();
        (edges, shares)
    }

    fn y_top(&self, cx: &Ctx<'_>) -> f64 {
        self.shares(cx).1.iter().flatten().copied().fold(1.0f64, f64::max) * 1.08
    }

    pub(crate) fn y_area(&self, cx: &Ctx<'_>) -> u32 {
        let top = self.y_top(cx);
        let labels: Vec<String> = axes::ticks(0.0, top, axes::Scale::Linear, 3).iter().map(|v| fmt_num(*v)).collect();
        axes::y_area_for(labels.iter().map(String::as_str))
    }

    fn panel_plot_h(&self, base: i32) -> i32 {
        let n = self.sets.len().max(1) as i32;
        ((base - X_AREA) / n - LABEL_H).max(MIN_PANEL)
    }

    /// The block grows with the number of sets so each panel stays readable.
    pub(crate) fn block_height(&self, base: i32) -> i32 {
        let n = self.sets.len().max(1) as i32;
        n * (LABEL_H + self.panel_plot_h(base) + 4) + X_AREA
    }

    pub(crate) fn draw(&self, cx: &Ctx<'_>, area: &axes::Area<'_>, base: i32) -> DrawResult<Vec<Rect>> {
        let (x0, x1) = self.x_bounds(cx);
        let (edges, shares) = self.shares(cx);
        let top = self.y_top(cx);
        let xl = |v: f64| axes::fmt_tick(v, cx.x_scale);
        let yl = |v: f64| fmt_num(v);
        let x =
            AxisSpec { lo: x0, hi: x1, ticks: axes::ticks(x0, x1, cx.x_scale, 6), label: &xl, desc: &cx.fig.x_label };
        let y =
            AxisSpec { lo: 0.0, hi: top, ticks: axes::ticks(0.0, top, axes::Scale::Linear, 3), label: &yl, desc: "" };
        let (w, _) = area.dim_in_pixel();
        let plot_h = self.panel_plot_h(base);
        let mut rects = Vec::new();
        let mut y_at = 0;
        let n = self.sets.len();
        for (k, ((name, samples), share)) in self.sets.iter().zip(&shares).enumerate() {
            let last = k + 1 == n;
            // chart margins: 10 above the plot, 4 below
            let h = LABEL_H + plot_h + if last { X_AREA } else { 4 };
            let panel = area.clone().shrink((0, y_at), (w, h as u32));
            let chart_area = panel.clone().shrink((0, LABEL_H - 10), (w, (h - LABEL_H + 10) as u32));
            let mut chart = axes::chart(&chart_area, &x, &y, cx.y_area, if last { X_AREA as u32 } else { 0 })?;
            let c = color(k);
            chart.draw_series(
                share
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s > 0.0)
                    .map(|(i, s)| Rectangle::new([(edges[i], 0.0), (edges[i + 1], *s)], c.mix(0.55).filled())),
            )?;
            // A step outline over the occupied bins only, so the panel's floor stays the axis.
            let first = share.iter().position(|s| *s > 0.0);
            let last = share.iter().rposition(|s| *s > 0.0);
            if let (Some(a), Some(b)) = (first, last) {
                let mut outline = vec![(edges[a], 0.0)];
                for (i, s) in share.iter().enumerate().take(b + 1).skip(a) {
                    outline.push((edges[i], *s));
                    outline.push((edges[i + 1], *s));
                }
                outline.push((edges[b + 1], 0.0));
                chart.draw_series(LineSeries::new(outline, c.stroke_width(2)))?;
            }
            let r = axes::plot_rect(&chart);
            let (bx, by) = panel.get_base_pixel();
            let label = format!("{name} ({} samples)", samples.len());
            let style = text::font(BODY_PX).color(&c).pos(Pos::new(HPos::Left, VPos::Top));
            panel.draw(&Text::new(label, (r.0 - bx, r.1 - by - LABEL_H + 2), style))?;
            rects.push(r);
            y_at += LABEL_H + plot_h + 4;
        }
        Ok(rects)
    }

    pub(crate) fn summary(&self, cx: &Ctx<'_>, s: &mut String) {
        for (name, v) in &self.sets {
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            if sorted.is_empty() {
                let _ = writeln!(s, "  {name}: no samples");
                continue;
            }
            let q = |p| fmt_num(crate::lab::timing::quantile_sorted(&sorted, p));
            let _ = writeln!(
                s,
                "  {name}: {} samples of {}, p50 {}, p90 {}, p99 {}, max {}",
                sorted.len(),
                cx.fig.x_label,
                q(0.5),
                q(0.9),
                q(0.99),
                q(1.0)
            );
        }
    }
}

pub(crate) fn bin_edges(lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let bins = bins.max(1);
    (0..=bins).map(|i| lo + (hi - lo) * i as f64 / bins as f64).collect()
}

/// Percentage of `samples` in each bin between consecutive `edges` (axis coordinates).
pub(crate) fn bin_shares(samples: &[f64], edges: &[f64], scale: axes::Scale) -> Vec<f64> {
    let bins = edges.len() - 1;
    let mut counts = vec![0usize; bins];
    let (lo, hi) = (edges[0], edges[bins]);
    let mut n = 0usize;
    for v in samples.iter().filter_map(|v| axes::to_axis(*v, scale)) {
        n += 1;
        let i = if hi > lo { (((v - lo) / (hi - lo)) * bins as f64).floor() as isize } else { 0 };
        counts[i.clamp(0, bins as isize - 1) as usize] += 1;
    }
    counts.iter().map(|c| if n == 0 { 0.0 } else { 100.0 * *c as f64 / n as f64 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_100() {
        let edges = bin_edges(0.0, 10.0, 5);
        let s = bin_shares(&[0.0, 1.0, 5.0, 9.9, 10.0], &edges, axes::Scale::Linear);
        assert_eq!(s.len(), 5);
        assert!((s.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        assert_eq!(s[0], 40.0);
        assert_eq!(s[4], 40.0);
    }
}
