//! The `Report` convention: experiments return data that can draw and tabulate itself.

use crate::lab::error::ParamError;
use crate::lab::figure::Figure;
use crate::lab::machine::MachineCard;
use crate::lab::table::Table;

/// What every experiment returns: its measurements (public fields, serialisable), a
/// figure and a table. Printing is left to the notebook and the CLI.
pub trait Report: ToJson {
    /// The figures of this report; the first is the main one.
    fn figures(&self) -> Vec<Figure>;

    /// The measurements as a table.
    fn table(&self) -> Table;

    /// The main figure.
    fn figure(&self) -> Figure {
        self.figures().into_iter().next().expect("a report draws at least one figure")
    }
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

/// Lets a cell show `Result<Report, ParamError>` directly: `r.figure()` draws the figure
/// or, for a refused parameter, a visible error box.
pub trait ReportResult {
    fn figure(&self) -> Result<Figure, ParamError>;
    fn table(&self) -> Result<Table, ParamError>;
    /// Figure number `i` (0 is the main one) of reports that draw several.
    fn figure_n(&self, i: usize) -> Result<Figure, ParamError>;
}

impl<R: Report> ReportResult for Result<R, ParamError> {
    fn figure(&self) -> Result<Figure, ParamError> {
        self.as_ref().map(Report::figure).map_err(Clone::clone)
    }
    fn table(&self) -> Result<Table, ParamError> {
        self.as_ref().map(Report::table).map_err(Clone::clone)
    }
    fn figure_n(&self, i: usize) -> Result<Figure, ParamError> {
        let r = self.as_ref().map_err(Clone::clone)?;
        let mut all = r.figures();
        let n = all.len();
        if i < n { Ok(all.swap_remove(i)) } else { Err(ParamError::new("figure", format!("0..={}", n - 1), i)) }
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

impl<T: Rich> Rich for Result<T, ParamError> {
    fn evcxr_display(&self) {
        match self {
            Ok(v) => v.evcxr_display(),
            Err(e) => e.evcxr_display(),
        }
    }
}

#[cfg(feature = "rt")]
impl Rich for crate::lab::rt::RtError {
    fn evcxr_display(&self) {
        crate::lab::rt::RtError::evcxr_display(self)
    }
}

#[cfg(feature = "rt")]
impl<T: Rich> Rich for Result<T, crate::lab::rt::RtError> {
    fn evcxr_display(&self) {
        match self {
            Ok(v) => v.evcxr_display(),
            Err(e) => e.evcxr_display(),
        }
    }
}

impl ParamError {
    /// Shows the error as a red box (rich output, so it cannot be lost the way stderr
    /// can), with the plain message beside it.
    pub fn evcxr_display(&self) {
        let html = format!(
            "<div class=\"conclab-error\" style=\"border-left:4px solid #c0392b;background:#fdecea;\
             padding:6px 10px;font-family:monospace\">ParamError: {}</div>",
            crate::lab::table::escape(&self.to_string())
        );
        crate::lab::display::emit(&[("text/html", &html), ("text/plain", &format!("ParamError: {self}"))]);
    }
}
