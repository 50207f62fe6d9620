//! The `Report` convention: experiments return data that can draw and tabulate itself.

use crate::lab::error::{LabError, ParamError, RunError};
use crate::lab::figure::Figure;
use crate::lab::findings::Finding;
use crate::lab::machine::MachineCard;
use crate::lab::table::Table;

/// What every experiment returns: its measurements (public fields, serialisable), a
/// figure and a table. Printing is left to the notebook and the CLI.
pub trait Report: ToJson {
    /// The figures of this report; the first is the main one.
    fn figures(&self) -> Vec<Figure>;

    /// The measurements as a table.
    fn table(&self) -> Table;

    /// What this run's data show, computed from the report itself: comparisons with
    /// their numbers and how sure they are, counts with their trials, and how busy the
    /// machine was. Shown under the main figure and printed by the CLI.
    fn findings(&self) -> Vec<Finding> {
        Vec::new()
    }

    /// The main figure, with the findings under it and the parameters the run used (so
    /// a reader sees which values produced it, also after a parameter cell failed).
    fn figure(&self) -> Figure {
        let fig = self.figures().into_iter().next().expect("a report draws at least one figure");
        let fig = fig.findings(&self.findings());
        match params_line(&self.to_json()) {
            Some(line) => fig.note(line),
            None => fig,
        }
    }
}

/// `Run with: counts=[1,4,16], samples=7` from a report's `params` field, if it has one.
pub fn params_line(report: &serde_json::Value) -> Option<String> {
    let params = report.get("params")?.as_object()?;
    let parts: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", v.to_string().replace('"', ""))).collect();
    (!parts.is_empty()).then(|| format!("Run with: {}", parts.join(", ")))
}

/// Serialises a report's data for the CLI's JSON output.
pub trait ToJson {
    fn to_json(&self) -> serde_json::Value;
}

impl<T: serde::Serialize> ToJson for T {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|e| serde_json::Value::String(format!("not serialisable: {e}")))
    }
}

/// Lets a cell show `Result<Report, LabError>` directly: `r.figure()` draws the figure
/// or, for a refused parameter or a failed run, a visible error box.
pub trait ReportResult {
    fn figure(&self) -> Result<Figure, LabError>;
    fn table(&self) -> Result<Table, LabError>;
    /// Figure number `i` (0 is the main one) of reports that draw several.
    fn figure_n(&self, i: usize) -> Result<Figure, LabError>;
}

impl<R: Report> ReportResult for Result<R, LabError> {
    fn figure(&self) -> Result<Figure, LabError> {
        self.as_ref().map(Report::figure).map_err(Clone::clone)
    }
    fn table(&self) -> Result<Table, LabError> {
        self.as_ref().map(Report::table).map_err(Clone::clone)
    }
    fn figure_n(&self, i: usize) -> Result<Figure, LabError> {
        let r = self.as_ref().map_err(Clone::clone)?;
        let mut all = r.figures();
        let n = all.len();
        if i < n { Ok(all.swap_remove(i)) } else { Err(ParamError::new("figure", format!("0..={}", n - 1), i).into()) }
    }
}

/// `r.figure().with_reference("spawn-cost")` in a cell: the figure with the reference
/// machine's run of that experiment drawn faded behind it ([`Figure::with_reference`]);
/// an error box stays an error box.
pub trait WithReference {
    fn with_reference(self, experiment: &str) -> Self;
    /// The same from another folder of `conclab run --out` results.
    fn with_reference_from(self, experiment: &str, dir: impl AsRef<std::path::Path>) -> Self;
}

impl WithReference for Result<Figure, LabError> {
    fn with_reference(self, experiment: &str) -> Self {
        self.map(|f| f.with_reference(experiment))
    }
    fn with_reference_from(self, experiment: &str, dir: impl AsRef<std::path::Path>) -> Self {
        self.map(|f| f.with_reference_from(experiment, dir))
    }
}

/// Values that show themselves in a notebook cell (evcxr calls `evcxr_display` on a
/// cell's final expression). In scope through the prelude, so a cell can end in a
/// `Result<Figure, ParamError>` and show whichever it holds.
pub trait Rich {
    fn evcxr_display(&self);
}

impl Rich for Figure {
    fn evcxr_display(&self) {
        Figure::evcxr_display(self)
    }
}

impl Rich for Table {
    fn evcxr_display(&self) {
        Table::evcxr_display(self)
    }
}

impl Rich for MachineCard {
    fn evcxr_display(&self) {
        MachineCard::evcxr_display(self)
    }
}

impl Rich for ParamError {
    fn evcxr_display(&self) {
        ParamError::evcxr_display(self)
    }
}

impl Rich for RunError {
    fn evcxr_display(&self) {
        RunError::evcxr_display(self)
    }
}

impl Rich for crate::lab::check::Verdict {
    fn evcxr_display(&self) {
        crate::lab::check::Verdict::evcxr_display(self)
    }
}

impl Rich for LabError {
    fn evcxr_display(&self) {
        LabError::evcxr_display(self)
    }
}

impl<T: Rich, E: Rich> Rich for Result<T, E> {
    fn evcxr_display(&self) {
        match self {
            Ok(v) => v.evcxr_display(),
            Err(e) => e.evcxr_display(),
        }
    }
}

/// A red box (rich output, so it cannot be lost the way stderr can) with the plain
/// message beside it: `kind: message`.
pub(crate) fn error_box(kind: &str, message: &str) {
    let html = format!(
        "<div class=\"conclab-error\" style=\"border-left:4px solid #c0392b;background:#fdecea;\
         padding:6px 10px;font-family:monospace\">{kind}: {}</div>",
        crate::lab::table::escape(message)
    );
    crate::lab::display::emit(&[("text/html", &html), ("text/plain", &format!("{kind}: {message}"))]);
}

#[cfg(feature = "rt")]
impl Rich for crate::lab::rt::RtError {
    fn evcxr_display(&self) {
        crate::lab::rt::RtError::evcxr_display(self)
    }
}

impl ParamError {
    /// Shows the error as a red box: `ParamError: threads must be 1..=512, got 0`.
    pub fn evcxr_display(&self) {
        error_box("ParamError", &self.to_string())
    }
}

impl RunError {
    /// Shows the failure as a red box: `RunError: … failed: …`.
    pub fn evcxr_display(&self) {
        error_box("RunError", &self.to_string())
    }
}

impl LabError {
    /// Shows the parameter error or the run failure as a red box.
    pub fn evcxr_display(&self) {
        match self {
            LabError::Param(e) => e.evcxr_display(),
            LabError::Run(e) => e.evcxr_display(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_params_line_lists_what_the_run_used() {
        let v = serde_json::json!({"params": {"counts": [1, 4], "kind": "park", "samples": 7}, "rows": []});
        assert_eq!(params_line(&v).unwrap(), "Run with: counts=[1,4], kind=park, samples=7");
        assert_eq!(params_line(&serde_json::json!({"rows": []})), None);
    }
}
