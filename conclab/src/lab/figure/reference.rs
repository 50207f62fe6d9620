//! Your run next to a reference machine's. `conclab run NAME --out DIR` saves, beside the
//! report, the data of every line chart it drew ([`figures_json`]); the reference set in
//! `docs/figures/` is made that way (`make figures`). [`Figure::with_reference`] reads the
//! same experiment's file there and draws its lines faded behind the reader's own, named
//! after the series they repeat and the machine that made them (`"tokio tasks · 2-CPU
//! AMD EPYC"`), with a note that says where they come from and with which parameters.
//!
//! Only line charts are overlaid (bars, histograms and timelines would hide each other);
//! a figure of another kind, or one the reference file does not have, gets a note saying
//! so instead. A second reference set (a bigger machine) is a second folder:
//! [`Figure::with_reference_from`].

use super::lines::REFERENCE_SEP;
use super::{Figure, Plot, Point, Series, Style};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Where the committed reference set lives: `docs/figures` of this checkout, or the
/// folder named by `CONCLAB_REFERENCE_DIR`.
pub fn reference_dir() -> PathBuf {
    std::env::var_os("CONCLAB_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("figures"))
}

fn style_name(s: Style) -> &'static str {
    match s {
        Style::Measured => "measured",
        Style::ErrorBars => "error-bars",
        Style::Ideal => "ideal",
        Style::Fit => "fit",
        Style::Reference => "reference",
    }
}

/// The drawable data of each figure, for the CLI's `NAME.json`: title and kind, and for
/// line charts every series with its points.
pub fn figures_json(figures: &[Figure]) -> Value {
    Value::Array(
        figures
            .iter()
            .map(|f| {
                let panels = match &f.plot {
                    Plot::Lines(l) => l.panels.clone(),
                    _ => Vec::new(),
                };
                let series = match &f.plot {
                    Plot::Lines(l) => l
                        .series
                        .iter()
                        .filter(|s| s.style != Style::Reference)
                        .map(|s| {
                            json!({
                                "name": s.name,
                                "style": style_name(s.style),
                                "panel": s.panel,
                                "points": s.points.iter().map(|p| [p.x, p.y]).collect::<Vec<_>>(),
                            })
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                json!({
                    "title": f.title,
                    "x_label": f.x_label,
                    "y_label": f.y_label,
                    "kind": f.plot.kind(),
                    "panels": panels,
                    "series": series,
                })
            })
            .collect(),
    )
}

/// A title with each run of digits (and decimal point) replaced by `#`.
fn without_numbers(title: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in title.chars() {
        let digit = c.is_ascii_digit() || (in_number && c == '.');
        if digit && !in_number {
            out.push('#');
        } else if !digit {
            out.push(c);
        }
        in_number = digit;
    }
    out
}

/// "2-CPU AMD EPYC": how a reference machine is named in a legend.
fn machine_label(card: &Value) -> String {
    let cpus = card.get("logical_cpus").and_then(Value::as_u64).unwrap_or(0);
    let model = card.get("cpu_model").and_then(Value::as_str).unwrap_or("unknown CPU");
    format!("{cpus}-CPU {model}")
}

impl Figure {
    /// Draws the reference set's run of `experiment` (its `conclab list` name) faded behind
    /// this figure's lines; see the [module docs](self). Never fails: what it cannot
    /// overlay it says in a note.
    pub fn with_reference(self, experiment: &str) -> Figure {
        self.with_reference_from(experiment, reference_dir())
    }

    /// [`Figure::with_reference`] from another folder of `conclab run --out` results (a
    /// second reference set, made on another machine).
    pub fn with_reference_from(mut self, experiment: &str, dir: impl AsRef<Path>) -> Figure {
        let dir = dir.as_ref();
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let path = dir.join(format!("{experiment}.json"));
        let saved: Option<Value> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
        let Some(saved) = saved else {
            self.notes.push(format!("No reference run of {experiment} at {} to compare with.", path.display()));
            return self;
        };
        // The same title; or, for a title that states this run's result, the only figure
        // with the same axes.
        let text = |f: &Value, k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
        let figs: &[Value] = saved.get("figures").and_then(Value::as_array).map_or(&[], Vec::as_slice);
        let same_axes: Vec<&Value> = figs
            .iter()
            .filter(|f| {
                text(f, "x_label").as_deref() == Some(self.x_label.as_str())
                    && text(f, "y_label").as_deref() == Some(self.y_label.as_str())
            })
            .collect();
        let found = figs
            .iter()
            .find(|f| text(f, "title").as_deref() == Some(self.title.as_str()))
            .or(if same_axes.len() == 1 { Some(same_axes[0]) } else { None });
        let label = machine_label(saved.get("machine").unwrap_or(&Value::Null));
        let Plot::Lines(lines) = &mut self.plot else {
            self.notes.push(format!("The reference run ({label}) is overlaid on line charts only."));
            return self;
        };
        let Some(found) = found else {
            self.notes.push(format!("The reference run of {experiment} ({label}) has no figure titled like this one."));
            return self;
        };
        // Panels by title: a reference panel the reader's figure lacks is left out.
        let titles = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array).into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect()
        };
        let ref_panels = titles(found.get("panels"));
        let own_panels = lines.panels.clone();
        let (mut added, mut left_out) = (0, 0);
        for s in found.get("series").and_then(Value::as_array).into_iter().flatten() {
            let style = s.get("style").and_then(Value::as_str).unwrap_or("");
            let (Some(name), Some(points)) =
                (s.get("name").and_then(Value::as_str), s.get("points").and_then(Value::as_array))
            else {
                continue;
            };
            if style == "ideal" || style == "reference" {
                continue;
            }
            let ref_panel = s.get("panel").and_then(Value::as_u64).unwrap_or(0) as usize;
            let panel = match (ref_panels.get(ref_panel), own_panels.is_empty()) {
                (None, true) => Some(0),
                // The same title, or one that differs only in its numbers ("sleep 5 ms" for
                // a reference's "sleep 50 ms": the parameters differ, which the note says).
                (Some(title), false) => own_panels
                    .iter()
                    .position(|t| t == title)
                    .or_else(|| own_panels.iter().position(|t| without_numbers(t) == without_numbers(title))),
                _ => None,
            };
            let Some(panel) = panel else {
                left_out += 1;
                continue;
            };
            let points: Vec<Point> =
                points.iter().filter_map(|p| Some(Point::new(p.get(0)?.as_f64()?, p.get(1)?.as_f64()?))).collect();
            let mut series = Series::new(format!("{name}{REFERENCE_SEP}{label}"), Style::Reference, points);
            series.panel = panel;
            lines.series.push(series);
            added += 1;
        }
        if added == 0 {
            self.notes.push(format!("The reference run of {experiment} ({label}) has no line to draw in this figure."));
            return self;
        }
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let theirs = saved.get("report").and_then(crate::lab::report::params_line);
        let ours = self.notes.iter().find(|n| n.starts_with("Run with: ")).cloned();
        let mut note = format!(
            "Faded lines: the same experiment on a reference machine ({label}; {file}), {} — compare shapes and \
             ratios more than absolute values.",
            theirs.as_deref().map_or("with its default parameters".to_string(), |t| {
                format!("run with {}", t.trim_start_matches("Run with: "))
            })
        );
        if let (Some(t), Some(o)) = (&theirs, &ours)
            && t != o
        {
            note.push_str(" Your parameters differ from the reference's: compare where both have points.");
        }
        if left_out > 0 {
            note.push_str(&format!(" {left_out} reference line(s) belong to panels this figure does not have."));
        }
        self.notes.push(note);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Figure {
        Figure::lines("Cost", "threads", "µs").series(Series::new(
            "spawn",
            Style::Measured,
            vec![Point::new(1.0, 10.0), Point::new(4.0, 20.0)],
        ))
    }

    #[test]
    fn a_saved_run_is_drawn_faded_behind_the_readers_own() {
        let dir = std::env::temp_dir().join(format!("conclab-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let saved = json!({
            "experiment": "demo",
            "params": {},
            "machine": {"logical_cpus": 16, "cpu_model": "Big Iron"},
            "figures": figures_json(&[measured().series(Series::new("ideal", Style::Ideal, vec![Point::new(1.0, 1.0)]))]),
        });
        std::fs::write(dir.join("demo.json"), saved.to_string()).unwrap();
        let f = measured().with_reference_from("demo", &dir);
        let Plot::Lines(l) = &f.plot else { panic!("a line chart") };
        assert_eq!(l.series.len(), 2, "the ideal line is not repeated: {:?}", l.series);
        assert_eq!(l.series[1].name, "spawn · 16-CPU Big Iron");
        assert_eq!(l.series[1].style, Style::Reference);
        assert_eq!(l.series[1].points, vec![Point::new(1.0, 10.0), Point::new(4.0, 20.0)]);
        let colors = l.colors();
        assert_ne!(colors[0], colors[1], "faded, not the same colour");
        assert!(f.notes.last().unwrap().contains("Faded lines"), "{:?}", f.notes);
        assert!(f.to_svg().contains("Big Iron"));
        // Another title, another kind, no file: a note each, never an error.
        // A title that states the run's result: found by its axes.
        let retitled = Figure::lines("Cost: 2× here", "threads", "µs")
            .series(Series::new("spawn", Style::Measured, vec![Point::new(1.0, 5.0)]))
            .with_reference_from("demo", &dir);
        let Plot::Lines(l) = &retitled.plot else { panic!("a line chart") };
        assert_eq!(l.series.len(), 2);
        let other = Figure::lines("Other", "x", "y").with_reference_from("demo", &dir);
        assert!(other.notes.last().unwrap().contains("no figure titled"), "{:?}", other.notes);
        let bars = Figure::bars("Cost", "x", "y").with_reference_from("demo", &dir);
        assert!(bars.notes.last().unwrap().contains("line charts only"));
        let none = measured().with_reference_from("missing", &dir);
        assert!(none.notes.last().unwrap().contains("No reference run"));
        assert!(none.errors.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reference_lines_go_to_the_panel_of_the_same_title() {
        let dir = std::env::temp_dir().join(format!("conclab-ref-panels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let panel = |title: &str, y: f64| {
            Figure::lines("P", "x", "y").panel(title).series(Series::new(
                "s",
                Style::Measured,
                vec![Point::new(1.0, y)],
            ))
        };
        // The reference has only panel "B" (at index 0); the reader has "A" and "B".
        let saved =
            json!({ "machine": {"logical_cpus": 4, "cpu_model": "M"}, "figures": figures_json(&[panel("B", 7.0)]) });
        std::fs::write(dir.join("p.json"), saved.to_string()).unwrap();
        let reader = panel("A", 1.0).panel("B").series(Series::new("s", Style::Measured, vec![Point::new(1.0, 2.0)]));
        let f = reader.with_reference_from("p", &dir);
        let Plot::Lines(l) = &f.plot else { panic!("a line chart") };
        let r = l.series.iter().find(|s| s.style == Style::Reference).expect("drawn");
        assert_eq!((r.panel, r.points[0].y), (1, 7.0));
        // A panel title that differs only in a number still matches.
        let moved = panel("A", 1.0).panel("B 5 ms").series(Series::new("s", Style::Measured, vec![]));
        let saved = json!({ "machine": {}, "figures": figures_json(&[panel("B 50 ms", 7.0)]) });
        std::fs::write(dir.join("q.json"), saved.to_string()).unwrap();
        let g = moved.with_reference_from("q", &dir);
        let Plot::Lines(m) = &g.plot else { panic!("a line chart") };
        assert_eq!(m.series.iter().filter(|s| s.style == Style::Reference && s.panel == 1).count(), 1);
        assert_eq!(without_numbers("sleep 50.5 ms, 3 tasks"), "sleep # ms, # tasks");
        // And the legend names the machine once.
        assert_eq!(l.legend().iter().filter(|e| e.name.contains("4-CPU M")).count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
