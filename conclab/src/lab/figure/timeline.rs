//! Timelines (Gantt charts): one lane per thread or worker, one colour per kind of span.

use super::axes::{self, AxisSpec, DrawResult, Rect};
use super::legend::{Entry, Swatch};
use super::text::fmt_num;
use super::{Ctx, color, unique};
use plotters::prelude::*;
use std::fmt::Write as _;

/// One span of a timeline: which lane (thread, worker) ran what (`key`) from `start` to `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub lane: String,
    pub key: String,
    pub start: f64,
    pub end: f64,
}

/// The data of a timeline; lanes are listed top to bottom in order of first appearance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    pub spans: Vec<Span>,
}

/// More kinds of span than this get no legend (the colours would not be told apart).
const MAX_KEYS: usize = 12;

impl Timeline {
    pub(crate) fn lanes(&self) -> Vec<String> {
        unique(self.spans.iter().map(|s| s.lane.clone()))
    }

    fn keys(&self) -> Vec<String> {
        unique(self.spans.iter().map(|s| s.key.clone()))
    }

    pub(crate) fn legend(&self) -> Vec<Entry> {
        let keys = self.keys();
        if keys.len() > MAX_KEYS {
            return Vec::new();
        }
        keys.into_iter().enumerate().map(|(k, name)| Entry { name, swatch: Swatch::Box(color(k), 0.85) }).collect()
    }

    pub(crate) fn y_area(&self) -> u32 {
        let lanes = self.lanes();
        axes::y_area_for(lanes.iter().map(String::as_str))
    }

    pub(crate) fn draw(&self, cx: &Ctx<'_>, area: &axes::Area<'_>) -> DrawResult<Vec<Rect>> {
        let lanes = self.lanes();
        let xs: Vec<f64> = self.spans.iter().flat_map(|s| [s.start, s.end]).collect();
        let (x0, x1) = axes::pad(axes::axis_values(&xs, cx.x_scale), false);
        let n = lanes.len().max(1) as f64;
        let last = n - 1.0;
        let xl = |v: f64| axes::fmt_tick(v, cx.x_scale);
        let yl = |v: f64| {
            let i = (last - v).round();
            if (last - v - i).abs() < 1e-6 && i >= 0.0 {
                lanes.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let x =
            AxisSpec { lo: x0, hi: x1, ticks: axes::ticks(x0, x1, cx.x_scale, 6), label: &xl, desc: &cx.fig.x_label };
        let y = AxisSpec {
            lo: -0.6,
            hi: n - 0.4,
            ticks: (0..lanes.len()).map(|i| i as f64).collect(),
            label: &yl,
            desc: "",
        };
        let mut chart = axes::chart(area, &x, &y, cx.y_area, 58)?;
        let tx = |v: f64| axes::to_axis(v, cx.x_scale);
        for (k, key) in self.keys().iter().enumerate() {
            let c = color(k);
            let rects: Vec<_> = self
                .spans
                .iter()
                .filter(|s| &s.key == key)
                .filter_map(|s| {
                    let y = last - lanes.iter().position(|l| l == &s.lane)? as f64;
                    Some(Rectangle::new([(tx(s.start)?, y - 0.35), (tx(s.end)?, y + 0.35)], c.mix(0.85).filled()))
                })
                .collect();
            chart.draw_series(rects)?;
        }
        Ok(vec![axes::plot_rect(&chart)])
    }

    pub(crate) fn summary(&self, s: &mut String) {
        for lane in self.lanes() {
            let mine: Vec<String> = self
                .spans
                .iter()
                .filter(|sp| sp.lane == lane)
                .map(|sp| format!("{} {}–{}", sp.key, fmt_num(sp.start), fmt_num(sp.end)))
                .collect();
            let _ = writeln!(s, "  {lane}: {}", mine.join(", "));
        }
    }
}
