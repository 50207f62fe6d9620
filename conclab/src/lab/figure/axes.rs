//! Axes shared by every plot kind: scales, ranges, ticks, the styled cartesian chart,
//! and error-bar whiskers.

use super::text::{self, BODY_PX};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithmic; values must be positive (others are left out).
    Log,
    /// Line charts only (their default): logarithmic when the data are all positive and
    /// span more than [`AUTO_LOG_RATIO`] from smallest to largest, else linear.
    Auto,
}

/// A line-chart axis on [`Scale::Auto`] turns logarithmic when its largest value is more
/// than this many times its smallest (about 1.7 decades: 1 to 64 threads qualifies).
pub const AUTO_LOG_RATIO: f64 = 50.0;

/// Resolves [`Scale::Auto`] for `values`: log when all are positive and span more than
/// [`AUTO_LOG_RATIO`]; a value ≤ 0 keeps the axis linear (a log axis would drop it).
pub fn auto_scale(values: impl IntoIterator<Item = f64>) -> Scale {
    let (mut lo, mut hi, mut any) = (f64::INFINITY, f64::NEG_INFINITY, false);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        if v <= 0.0 {
            return Scale::Linear;
        }
        (lo, hi, any) = (lo.min(v), hi.max(v), true);
    }
    if any && hi / lo > AUTO_LOG_RATIO { Scale::Log } else { Scale::Linear }
}

/// A linear axis over `lo..hi` (axis coordinates: log10 of the value on a log axis) whose
/// ticks are exactly `keys`, so log axes, bar groups and timeline lanes get the ticks
/// they need and one chart type serves every kind.
pub(crate) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub keys: Vec<f64>,
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

/// One axis as a kind wants it drawn.
pub(crate) struct AxisSpec<'a> {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
    pub label: &'a dyn Fn(f64) -> String,
    /// Axis title under the x axis; y titles are drawn above the plot by the frame.
    pub desc: &'a str,
}

pub(crate) type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
pub(crate) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Axis, Axis>>;
pub(crate) type DrawResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Pixel rectangle `(left, top, right, bottom)` in SVG coordinates.
pub(crate) type Rect = (i32, i32, i32, i32);

/// Space at the left of the plot for y tick labels of these texts.
pub(crate) fn y_area_for<'s>(labels: impl IntoIterator<Item = &'s str>) -> u32 {
    let w = labels.into_iter().map(|l| text::width(l, BODY_PX)).fold(0.0, f64::max);
    (w + 16.0).clamp(36.0, 260.0) as u32
}

/// A chart on `area` with the lab's axis style: grid at the ticks, body-size tick labels,
/// the x title under the axis. `x_area` is the height kept under the plot for tick
/// labels and title (0: none, for stacked panels).
pub(crate) fn chart<'a, 'b>(
    area: &'a Area<'b>,
    x: &AxisSpec<'_>,
    y: &AxisSpec<'_>,
    y_area: u32,
    x_area: u32,
) -> DrawResult<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .margin_left(12)
        .margin_right(24)
        .margin_top(10)
        .margin_bottom(4)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(
            Axis { lo: x.lo, hi: x.hi, keys: x.ticks.clone() },
            Axis { lo: y.lo, hi: y.hi, keys: y.ticks.clone() },
        )?;
    let xf = |v: &f64| (x.label)(*v);
    let yf = |v: &f64| (y.label)(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .axis_style(text::GREY)
        .label_style(text::font(BODY_PX).color(&text::INK))
        .axis_desc_style(text::font(BODY_PX).color(&text::INK));
    if x_area > 0 {
        mesh.x_desc(x.desc);
    } else {
        mesh.x_labels(0);
    }
    mesh.draw()?;
    Ok(chart)
}

/// The plotting rectangle of `chart` in SVG pixels.
pub(crate) fn plot_rect(chart: &Chart<'_, '_>) -> Rect {
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    (xr.start, yr.start, xr.end, yr.end)
}

/// Draws error bars at `(x, lo, hi)` (axis coordinates): a stem with 12 px caps. A spread
/// under 3 px would turn stem and caps into one blot, so it is drawn as a single cap
/// that says "the spread is about this thin".
pub(crate) fn whiskers(chart: &mut Chart<'_, '_>, bars: &[(f64, f64, f64)], color: RGBColor) -> DrawResult {
    let style = color.stroke_width(2);
    let mut stems = Vec::new();
    let mut caps = Vec::new();
    for &(x, lo, hi) in bars {
        let (_, plo) = chart.backend_coord(&(x, lo));
        let (_, phi) = chart.backend_coord(&(x, hi));
        if (plo - phi).abs() < 3 {
            caps.push(EmptyElement::at((x, (lo + hi) / 2.0)) + PathElement::new(vec![(-6, 0), (6, 0)], style));
        } else {
            stems.push(PathElement::new(vec![(x, lo), (x, hi)], style));
            for v in [lo, hi] {
                caps.push(EmptyElement::at((x, v)) + PathElement::new(vec![(-6, 0), (6, 0)], style));
            }
        }
    }
    chart.draw_series(stems)?;
    chart.draw_series(caps)?;
    Ok(())
}

/// Maps a value to its axis coordinate; `None` for values a log axis cannot show.
pub(crate) fn to_axis(v: f64, scale: Scale) -> Option<f64> {
    match scale {
        Scale::Linear | Scale::Auto if v.is_finite() => Some(v),
        Scale::Log if v > 0.0 && v.is_finite() => Some(v.log10()),
        _ => None,
    }
}

/// Min and max of the values in axis coordinates (a unit range when there are none).
pub(crate) fn axis_values(values: &[f64], scale: Scale) -> (f64, f64) {
    let t: Vec<f64> = values.iter().filter_map(|v| to_axis(*v, scale)).collect();
    if t.is_empty() {
        return (0.0, 1.0);
    }
    let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Adds 6% head room on both sides; a linear axis of non-negative values starts at 0.
pub(crate) fn pad((lo, hi): (f64, f64), from_zero: bool) -> (f64, f64) {
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) * 0.5 };
    let lo2 = if from_zero && lo >= 0.0 { 0.0 } else { lo - span * 0.06 };
    (lo2, hi + span * 0.06)
}

/// Tick positions (axis coordinates) for about `target` ticks: "nice" 1-2-5 steps on a
/// linear axis, decades (with 2s and 5s, or 3s, when few) on a log axis.
pub(crate) fn ticks(lo: f64, hi: f64, scale: Scale, target: usize) -> Vec<f64> {
    match scale {
        Scale::Linear | Scale::Auto => {
            let raw = (hi - lo) / target.max(1) as f64;
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
            // A range narrower than the gaps between 1, 2 and 5 (1 000–1 040 ms, say) would
            // keep one tick or none: label it with the linear ticks of its values instead.
            if t.len() < 3 {
                let lin: Vec<f64> = ticks(10f64.powf(lo), 10f64.powf(hi), Scale::Linear, target)
                    .into_iter()
                    .filter(|v| *v > 0.0)
                    .map(f64::log10)
                    .collect();
                if lin.len() > t.len() {
                    return lin;
                }
            }
            t
        }
    }
}

/// A tick's label: the value itself (10^v on a log axis).
pub(crate) fn fmt_tick(v: f64, scale: Scale) -> String {
    match scale {
        Scale::Linear | Scale::Auto => text::fmt_num(v),
        Scale::Log => text::fmt_num(10f64.powf(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_nice() {
        assert_eq!(ticks(0.0, 10.0, Scale::Linear, 6), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 1.0, Scale::Linear, 6).len(), 6);
        assert_eq!(ticks(0.0, 10.0, Scale::Linear, 2), vec![0.0, 5.0, 10.0]);
    }

    #[test]
    fn log_ticks_land_on_decades() {
        let t: Vec<String> = ticks(0.0, 4.0, Scale::Log, 6).iter().map(|v| fmt_tick(*v, Scale::Log)).collect();
        assert_eq!(t.first().map(String::as_str), Some("1"));
        assert!(t.contains(&"1000".to_string()), "{t:?}");
    }

    #[test]
    fn auto_scale_turns_log_past_the_ratio_and_never_with_zeros() {
        assert_eq!(auto_scale([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]), Scale::Log);
        assert_eq!(auto_scale([1.0, 2.0, 4.0, 8.0]), Scale::Linear);
        assert_eq!(auto_scale([0.0, 1.0, 1000.0]), Scale::Linear);
        assert_eq!(auto_scale([-1.0, 1000.0]), Scale::Linear);
        assert_eq!(auto_scale([]), Scale::Linear);
        assert_eq!(auto_scale([0.5, 0.5, 100.0]), Scale::Log);
    }

    #[test]
    fn a_narrow_log_range_still_gets_several_ticks() {
        let t = ticks(1000f64.log10(), 1040f64.log10(), Scale::Log, 6);
        assert!(t.len() >= 3, "{t:?}");
        let labels: Vec<String> = t.iter().map(|v| fmt_tick(*v, Scale::Log)).collect();
        assert!(labels.contains(&"1000".to_string()) || labels.contains(&"1 000".to_string()), "{labels:?}");
        // A wide range keeps its 1-2-5 decades.
        assert_eq!(ticks(0.0, 2.0, Scale::Log, 6).len(), 7);
    }
}
