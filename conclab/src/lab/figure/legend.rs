//! Legends: always in a band of their own under the plot, so they can never cover data.

use super::axes::{Area, DrawResult, Rect};
use super::text::{self, BODY_PX, LINE_PX};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Where a caller would like the legend. Kept so existing calls compile: every legend
/// now sits in a band under the plot, where it cannot cover data, so the hint has no
/// effect on the drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    UpperLeft,
    UpperRight,
    LowerLeft,
    LowerRight,
    MiddleRight,
}

/// What a legend entry shows beside its name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Swatch {
    /// A line segment; `dashed` for ideal/limit lines.
    Line { color: RGBColor, width: u32, dashed: bool },
    /// A line with a marker: measured data.
    Marked(RGBColor),
    /// A filled box (bars, spans, histogram fills) with its opacity.
    Box(RGBColor, f64),
    /// A dot (values on a log-scale bar chart).
    Dot(RGBColor),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub name: String,
    pub swatch: Swatch,
}

const SWATCH_W: i32 = 26;
const GAP: i32 = 8;
const SPACING: i32 = 20;

fn entry_width(e: &Entry) -> i32 {
    SWATCH_W + GAP + text::width(&e.name, BODY_PX).ceil() as i32 + SPACING
}

/// Entries flowed into rows that fit `width` pixels.
pub(crate) fn rows(entries: &[Entry], width: i32) -> Vec<Vec<&Entry>> {
    let mut rows: Vec<Vec<&Entry>> = Vec::new();
    let mut used = 0;
    for e in entries {
        let w = entry_width(e);
        match rows.last_mut() {
            Some(row) if used + w - SPACING <= width => {
                row.push(e);
                used += w;
            }
            _ => {
                rows.push(vec![e]);
                used = w;
            }
        }
    }
    rows
}

/// Height of the legend band for `entries` in `width` pixels (0 when there is none).
pub(crate) fn height(entries: &[Entry], width: i32) -> i32 {
    let n = rows(entries, width).len() as i32;
    if n == 0 { 0 } else { n * LINE_PX + 10 }
}

/// Draws the legend band with its top-left corner at `(left, top)`, `width` wide;
/// returns the box it occupies.
pub(crate) fn draw(root: &Area<'_>, entries: &[Entry], left: i32, top: i32, width: i32) -> DrawResult<Option<Rect>> {
    let rows = rows(entries, width);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut right = left;
    for (r, row) in rows.iter().enumerate() {
        let cy = top + 5 + r as i32 * LINE_PX + LINE_PX / 2;
        let mut x = left;
        for e in row {
            swatch(root, e.swatch, x, cy)?;
            let style = text::font(BODY_PX).color(&text::INK).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(e.name.clone(), (x + SWATCH_W + GAP, cy), style))?;
            right = right.max(x + entry_width(e) - SPACING);
            x += entry_width(e);
        }
    }
    Ok(Some((left, top, right, top + rows.len() as i32 * LINE_PX + 10)))
}

fn swatch(root: &Area<'_>, s: Swatch, x: i32, cy: i32) -> DrawResult {
    let (x0, x1) = (x, x + SWATCH_W);
    match s {
        Swatch::Line { color, width, dashed: false } => {
            root.draw(&PathElement::new(vec![(x0, cy), (x1, cy)], color.stroke_width(width)))?
        }
        Swatch::Line { color, width, dashed: true } => {
            for k in 0..3 {
                let a = x0 + k * 10;
                root.draw(&PathElement::new(vec![(a, cy), ((a + 6).min(x1), cy)], color.stroke_width(width)))?;
            }
        }
        Swatch::Marked(color) => {
            root.draw(&PathElement::new(vec![(x0, cy), (x1, cy)], color.stroke_width(2)))?;
            root.draw(&Circle::new(((x0 + x1) / 2, cy), 4, color.filled()))?;
        }
        Swatch::Box(color, alpha) => {
            root.draw(&Rectangle::new([(x0 + 3, cy - 7), (x1 - 3, cy + 7)], color.mix(alpha).filled()))?;
            root.draw(&Rectangle::new([(x0 + 3, cy - 7), (x1 - 3, cy + 7)], color.stroke_width(1)))?;
        }
        Swatch::Dot(color) => root.draw(&Circle::new(((x0 + x1) / 2, cy), 5, color.filled()))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry { name: name.into(), swatch: Swatch::Dot(BLACK) }
    }

    #[test]
    fn entries_flow_into_rows_that_fit() {
        let e: Vec<Entry> = (0..8).map(|i| entry(&format!("{i} producers + {i} consumers"))).collect();
        let r = rows(&e, 700);
        assert!(r.len() > 1);
        assert_eq!(r.iter().map(Vec::len).sum::<usize>(), 8);
        for row in &r {
            let w: i32 = row.iter().map(|e| entry_width(e)).sum::<i32>() - SPACING;
            assert!(w <= 700 || row.len() == 1, "{w}");
        }
        assert_eq!(height(&[], 700), 0);
    }
}
