//! Heatmaps: a grid of cells (rows × columns), each coloured by its value, from white
//! (0) to dark blue (the largest value); the colour scale is `log(1 + value)` so that
//! both a cell of 3 and one of 3 000 show.

use super::Ctx;
use super::axes::{self, AxisSpec, DrawResult, Rect};
use super::text::fmt_num;
use plotters::prelude::*;
use std::fmt::Write as _;

/// The data of a heatmap: `values[row][column]`, rows drawn top to bottom.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Heatmap {
    pub rows: Vec<String>,
    pub values: Vec<Vec<f64>>,
}

/// The colour of `v` on a scale whose darkest end is `max` (white for 0).
pub(crate) fn shade(v: f64, max: f64) -> RGBColor {
    let t = if max > 0.0 && v > 0.0 { ((1.0 + v).ln() / (1.0 + max).ln()).clamp(0.0, 1.0) } else { 0.0 };
    // light blue for the smallest non-zero value, so it stands out from empty cells
    let t = if v > 0.0 { 0.15 + 0.85 * t } else { 0.0 };
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(255.0, 0x08 as f64), mix(255.0, 0x30 as f64), mix(255.0, 0x6b as f64))
}

impl Heatmap {
    fn columns(&self) -> usize {
        self.values.iter().map(Vec::len).max().unwrap_or(0)
    }

    fn max(&self) -> f64 {
        self.values.iter().flatten().copied().fold(0.0, f64::max)
    }

    pub(crate) fn y_area(&self) -> u32 {
        axes::y_area_for(self.rows.iter().map(String::as_str))
    }

    pub(crate) fn notes(&self) -> Vec<String> {
        vec![format!("Colour: white = 0, darkest blue = {} (a log scale: light blue is a few).", fmt_num(self.max()))]
    }

    pub(crate) fn draw(&self, cx: &Ctx<'_>, area: &axes::Area<'_>) -> DrawResult<Vec<Rect>> {
        let cols = self.columns().max(1) as f64;
        let n = self.rows.len().max(1) as f64;
        let last = n - 1.0;
        let step = if cols > 16.0 { (cols / 8.0).ceil() } else { 1.0 };
        let xl = |v: f64| fmt_num(v);
        let rows = &self.rows;
        let yl = |v: f64| {
            let i = (last - v).round();
            if (last - v - i).abs() < 1e-6 && i >= 0.0 {
                rows.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let x_ticks: Vec<f64> = (0..).map(|i| i as f64 * step).take_while(|v| *v < cols).collect();
        let x = AxisSpec { lo: -0.5, hi: cols - 0.5, ticks: x_ticks, label: &xl, desc: &cx.fig.x_label };
        let y = AxisSpec {
            lo: -0.5,
            hi: n - 0.5,
            ticks: (0..rows.len()).map(|i| i as f64).collect(),
            label: &yl,
            desc: "",
        };
        let mut chart = axes::chart(area, &x, &y, cx.y_area, 58)?;
        let max = self.max();
        let cells = self.values.iter().enumerate().flat_map(|(r, row)| {
            let y = last - r as f64;
            row.iter().enumerate().map(move |(c, v)| {
                let c = c as f64;
                Rectangle::new([(c - 0.46, y - 0.46), (c + 0.46, y + 0.46)], shade(*v, max).filled())
            })
        });
        chart.draw_series(cells)?;
        Ok(vec![axes::plot_rect(&chart)])
    }

    pub(crate) fn summary(&self, s: &mut String) {
        for (name, row) in self.rows.iter().zip(&self.values) {
            let total: f64 = row.iter().sum();
            let used = row.iter().filter(|v| **v > 0.0).count();
            let max = row.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                s,
                "  {name}: total {}, {used} of {} cells non-zero, max {}",
                fmt_num(total),
                row.len(),
                fmt_num(max)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Figure;

    #[test]
    fn shades_run_from_white_to_dark_and_the_figure_draws() {
        assert_eq!(shade(0.0, 10.0), RGBColor(255, 255, 255));
        assert_eq!(shade(10.0, 10.0), RGBColor(0x08, 0x30, 0x6b));
        assert!(shade(1.0, 10.0).0 < 255, "a small value is not white");
        let f = Figure::heatmap("Occupancy", "slot", "level")
            .row("level 0", vec![0.0, 1.0, 5.0])
            .row("level 1", vec![2.0, 0.0, 0.0]);
        assert!(f.errors.is_empty());
        let svg = f.to_svg();
        assert!(svg.contains("<svg") && svg.contains("level 1"));
        assert!(f.summary().contains("level 0: total 6, 2 of 3 cells non-zero, max 5"), "{}", f.summary());
        let g = Figure::bars("B", "x", "y").row("r", vec![1.0]);
        assert_eq!(g.errors.len(), 1);
    }
}
