use super::axes::Rect;
use super::output::render;
use super::*;

/// plotters writes each text element's content on a line of its own.
fn has_text(svg: &str, text: &str) -> bool {
    svg.lines().any(|l| l.trim() == text)
}

/// Each text element's rendered size and content.
fn texts(svg: &str) -> Vec<(f64, String)> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let px = t.split("font-size=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().parse().unwrap();
            let body = t.split('>').nth(1).unwrap().split('<').next().unwrap().trim().to_string();
            (px, body)
        })
        .collect()
}

fn measured(name: &str, pts: &[(f64, f64)]) -> Series {
    Series::new(name, Style::Measured, pts.iter().map(|&(x, y)| Point::spread(x, y, y * 0.9, y * 1.1)).collect())
}

fn lines_fig() -> Figure {
    Figure::lines("L", "threads", "µs")
        .series(measured("alpha", &[(1.0, 2.0), (2.0, 3.0), (4.0, 3.5)]))
        .series(Series::new("beta", Style::ErrorBars, vec![Point::spread(1.0, 1.0, 0.99, 1.01), Point::new(4.0, 2.0)]))
        .series(Series::new("ideal", Style::Ideal, vec![Point::new(1.0, 1.0), Point::new(4.0, 4.0)]))
        .series(Series::new("fit", Style::Fit, vec![Point::new(1.0, 1.5), Point::new(4.0, 3.0)]))
}

fn bars_fig() -> Figure {
    Figure::bars("B", "queue", "Mops/s")
        .bar("mutex VecDeque", "1 pair", 3.0, Some((2.0, 4.0)))
        .bar("mutex VecDeque", "4 pairs", 5.0, Some((4.9, 5.0)))
        .bar("crossbeam ArrayQueue", "1 pair", 30.0, None)
}

fn histogram_fig() -> Figure {
    Figure::histogram("H", "latency (µs)", 20)
        .log_x()
        .samples("same CPU", vec![1.0, 2.0, 3.0, 50.0])
        .samples("unpinned", vec![1.0, 2.0, 2.5, 3.0])
}

fn timeline_fig() -> Figure {
    Figure::timeline("T", "time (ms)", "thread")
        .span("worker-1", "task 0", 0.0, 1.0)
        .span("worker-2", "task 1", 0.5, 2.0)
        .span("worker-1", "task 2", 1.0, 1.5)
}

fn all() -> Vec<(Figure, Vec<&'static str>)> {
    vec![
        (lines_fig(), vec!["alpha", "beta", "ideal", "fit"]),
        (bars_fig(), vec!["mutex VecDeque / 1 pair", "mutex VecDeque / 4 pairs", "crossbeam ArrayQueue / 1 pair"]),
        (histogram_fig(), vec!["same CPU", "unpinned"]),
        (timeline_fig(), vec!["worker-1", "worker-2", "task 2"]),
    ]
}

fn overlaps(a: Rect, b: Rect) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

#[test]
fn every_kind_renders_an_svg_and_summarises_each_series() {
    for (f, names) in all() {
        let svg = f.to_svg();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(has_text(&svg, &f.title), "title missing in {}", f.title);
        assert!(!svg.contains("could not be drawn"), "{svg}");
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let sum = f.summary();
        assert!(sum.starts_with(&f.title));
        for n in names {
            assert!(sum.contains(n), "{n} missing from the summary of {}:\n{sum}", f.plot.kind());
        }
        assert_eq!(svg, f.to_svg(), "drawing is deterministic");
    }
}

#[test]
fn misuse_is_an_error_shown_in_figure_and_summary() {
    let s = || Series::new("s", Style::Measured, vec![Point::new(1.0, 1.0)]);
    let cases = [
        Figure::bars("B", "x", "y").series(s()),
        Figure::histogram("H", "x", 10).series(s()),
        Figure::lines("L", "x", "y").bar("g", "s", 1.0, None),
        Figure::timeline("T", "x", "y").samples("a", vec![1.0]),
        Figure::histogram("H", "x", 10).span("lane", "k", 0.0, 1.0),
        Figure::bars("B", "x", "y").log_x(),
        Figure::timeline("T", "x", "y").log_y(),
        Figure::histogram("H", "x", 10).log_y(),
    ];
    for f in cases {
        assert_eq!(f.errors.len(), 1, "{}", f.plot.kind());
        let svg = f.to_svg();
        assert!(svg.contains("figure error:"), "{svg}");
        assert!(!svg.contains("could not be drawn"));
        assert!(f.summary().contains("figure error:"), "{}", f.summary());
    }
    // fitting calls are no errors
    assert!(Figure::lines("L", "x", "y").log_x().log_y().series(s()).errors.is_empty());
    assert!(Figure::bars("B", "x", "y").log_y().bar("g", "s", 1.0, None).errors.is_empty());
}

#[test]
fn legends_sit_outside_every_plot_rectangle() {
    for (f, _) in all() {
        let (_, layout) = render(&f).unwrap();
        assert!(!layout.plots.is_empty());
        if let Some(l) = layout.legend {
            for p in &layout.plots {
                assert!(!overlaps(l, *p), "{}: legend {l:?} overlaps plot {p:?}", f.plot.kind());
                assert!(l.1 >= p.3, "{}: legend {l:?} not below plot {p:?}", f.plot.kind());
            }
            assert!(l.2 <= layout.width as i32 && l.3 <= layout.height as i32, "legend outside the SVG: {l:?}");
        }
    }
    // kinds with several series do have a legend
    for f in [lines_fig(), bars_fig(), timeline_fig()] {
        assert!(render(&f).unwrap().1.legend.is_some(), "{}", f.plot.kind());
    }
}

#[test]
fn many_legend_entries_wrap_into_rows_below_the_plot() {
    let mut f = Figure::lines("L", "x", "y");
    for i in 0..12 {
        f = f.series(measured(&format!("{i} producers + {i} consumers"), &[(1.0, i as f64 + 1.0), (2.0, 2.0)]));
    }
    let (_, layout) = render(&f).unwrap();
    let l = layout.legend.unwrap();
    assert!(l.3 - l.1 > 3 * text::LINE_PX, "{l:?}");
    assert!(l.2 <= layout.width as i32);
    assert!(!overlaps(l, layout.plots[0]));
}

#[test]
fn histogram_sets_get_panels_of_their_own() {
    let (_, layout) = render(&histogram_fig()).unwrap();
    assert_eq!(layout.plots.len(), 2);
    assert!(!overlaps(layout.plots[0], layout.plots[1]));
    assert!(layout.plots[0].3 <= layout.plots[1].1);
}

#[test]
fn text_is_body_size_or_larger() {
    for (f, _) in all() {
        let svg = f.to_svg();
        let sizes: Vec<f64> =
            svg.split("font-size=\"").skip(1).map(|s| s.split('"').next().unwrap().parse::<f64>().unwrap()).collect();
        assert!(!sizes.is_empty());
        assert!(sizes.iter().all(|s| *s >= text::BODY_PX - 0.01), "{}: {sizes:?}", f.plot.kind());
    }
}

#[test]
fn long_captions_titles_and_notes_wrap() {
    let long = "word ".repeat(80);
    let f = lines_fig().caption(long.trim()).note(long.trim());
    let f = Figure { title: long.trim().to_string(), ..f };
    let svg = f.to_svg();
    let lines: Vec<(f64, String)> = texts(&svg).into_iter().filter(|(_, t)| t.starts_with("word")).collect();
    assert!(lines.len() >= 6, "{lines:?}");
    for (px, l) in lines {
        assert!(12.0 + text::width(&l, px) <= f.width as f64, "{px} px: {l}");
    }
    let (_, short) = render(&lines_fig()).unwrap();
    let (_, tall) = render(&f).unwrap();
    assert!(tall.height > short.height, "the SVG grows with wrapped text");
}

#[test]
fn line_axes_turn_log_past_two_decades_unless_forced_linear() {
    let wide = || Figure::lines("L", "threads", "s").series(measured("m", &[(1.0, 1.0), (64.0, 2.0)]));
    assert_eq!(wide().scales(), (Scale::Log, Scale::Linear));
    assert_eq!(wide().linear_x().scales(), (Scale::Linear, Scale::Linear));
    let tall = Figure::lines("L", "x", "y").series(measured("m", &[(0.0, 1.0), (1.0, 1000.0)]));
    assert_eq!(tall.scales(), (Scale::Linear, Scale::Log), "x holds a zero: stays linear");
    assert_eq!(tall.clone().linear_y().scales(), (Scale::Linear, Scale::Linear));
    assert!(wide().summary().contains("log scale on x"));
    // other kinds never switch on their own
    let h = Figure::histogram("H", "x", 5).samples("a", vec![1.0, 1e6]);
    assert_eq!(h.scales(), (Scale::Linear, Scale::Linear));
}

#[test]
fn error_bars_are_whiskers_not_circle_glyphs() {
    // linear bars: whiskers only (paths), no marker circles
    let svg = bars_fig().to_svg();
    assert!(!svg.contains("<circle"), "linear bars draw no circles");
    // a near-zero spread still draws a cap
    assert!(svg.matches("<polyline").count() >= 3);
}

#[test]
fn log_bar_charts_draw_dots_and_say_why() {
    let f = bars_fig().log_y();
    let svg = f.to_svg();
    assert_eq!(svg.matches("<circle").count(), 3 + 2, "one dot per value, one per legend entry");
    assert!(f.summary().contains(bars::LOG_NOTE));
}

#[test]
fn timeline_labels_lanes_and_bars_label_groups() {
    let svg = timeline_fig().to_svg();
    assert!(has_text(&svg, "worker-1") && has_text(&svg, "worker-2"));
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

#[test]
fn empty_figures_still_draw() {
    for f in [Figure::lines("L", "x", "y"), Figure::bars("B", "x", "y"), Figure::histogram("H", "x", 5)] {
        assert!(!f.to_svg().contains("could not be drawn"), "{}", f.plot.kind());
    }
    assert!(!Figure::timeline("T", "x", "y").to_svg().contains("could not be drawn"));
}

#[test]
fn panels_sit_side_by_side_and_share_names_colours_and_legend() {
    let f = Figure::lines("P", "N", "ms")
        .panel("waiting")
        .series(measured("threads", &[(1.0, 50.0), (100.0, 60.0)]))
        .series(measured("tasks", &[(1.0, 50.0), (100.0, 51.0)]))
        .panel("computing")
        .series(measured("threads", &[(1.0, 2.0), (100.0, 100.0)]))
        .series(Series::new("bound", Style::Ideal, vec![Point::new(1.0, 2.0), Point::new(100.0, 100.0)]));
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    let (svg, layout) = render(&f).unwrap();
    assert_eq!(layout.plots.len(), 2);
    let (a, b) = (layout.plots[0], layout.plots[1]);
    assert!(a.2 <= b.0 && !overlaps(a, b), "{a:?} {b:?}");
    assert!(has_text(&svg, "waiting") && has_text(&svg, "computing"));
    // "threads" is one legend entry, drawn in one colour in both panels.
    let Plot::Lines(l) = &f.plot else { unreachable!() };
    assert_eq!(l.legend().iter().filter(|e| e.name == "threads").count(), 1);
    let c = l.colors();
    assert_eq!(c[0], c[2]);
    assert_ne!(c[0], c[1]);
    let sum = f.summary();
    assert!(sum.contains("[waiting] threads") && sum.contains("[computing] bound"), "{sum}");
    assert_eq!(Figure::bars("B", "x", "y").panel("p").errors.len(), 1);
}

#[test]
fn narrow_panels_thin_their_tick_labels_instead_of_overlapping_them() {
    let pts = |k: f64| vec![Point::new(1.0, k), Point::new(100_000.0, 2.0 * k)];
    let f = Figure::lines("P", "N", "ms")
        .log_x()
        .panel("a")
        .series(Series::new("s", Style::Measured, pts(1.0)))
        .panel("b")
        .series(Series::new("s", Style::Measured, pts(2.0)))
        .panel("c")
        .series(Series::new("s", Style::Measured, pts(3.0)));
    let svg = f.to_svg();
    // Six decades do not fit under a third of 760 px: every other one is labelled.
    assert!(has_text(&svg, "1") && has_text(&svg, "100") && !has_text(&svg, "10"), "{svg}");
}
