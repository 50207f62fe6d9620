//! Tables: HTML in a notebook, aligned plain text in logs and the CLI.

use serde::Serialize;

/// A titled table of strings with optional notes under it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table (units, what the columns mean, the machine).
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Appends a row; short rows are padded with empty cells.
    pub fn row(&mut self, mut cells: Vec<String>) -> &mut Table {
        cells.resize(self.headers.len().max(cells.len()), String::new());
        self.rows.push(cells);
        self
    }

    /// Appends a note line shown under the table.
    pub fn note(&mut self, line: impl Into<String>) -> &mut Table {
        self.notes.push(line.into());
        self
    }

    /// Aligned plain text: title, header, rule, rows, notes.
    pub fn to_text(&self) -> String {
        let cols = self.headers.len().max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut width = vec![0usize; cols];
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |r: &Vec<String>| {
            let cells: Vec<String> =
                (0..cols).map(|i| format!("{:<w$}", r.get(i).map_or("", String::as_str), w = width[i])).collect();
            cells.join("  ").trim_end().to_string()
        };
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&self.title);
            out.push('\n');
        }
        out.push_str(&line(&self.headers));
        out.push('\n');
        out.push_str(&width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(n);
            out.push('\n');
        }
        out
    }

    /// A self-contained HTML table (escaped), for the notebook.
    pub fn to_html(&self) -> String {
        let mut h = String::from("<div class=\"conclab-table\">");
        if !self.title.is_empty() {
            h += &format!("<p><strong>{}</strong></p>", escape(&self.title));
        }
        h += "<table><thead><tr>";
        for c in &self.headers {
            h += &format!("<th style=\"text-align:left\">{}</th>", escape(c));
        }
        h += "</tr></thead><tbody>";
        for r in &self.rows {
            h += "<tr>";
            for c in r {
                h += &format!("<td style=\"text-align:left\">{}</td>", escape(c));
            }
            h += "</tr>";
        }
        h += "</tbody></table>";
        for n in &self.notes {
            h += &format!("<p><small>{}</small></p>", escape(n));
        }
        h + "</div>"
    }

    /// Shows the table in a notebook as HTML, with the plain text beside it.
    pub fn evcxr_display(&self) {
        crate::lab::display::emit(&[("text/html", &self.to_html()), ("text/plain", &self.to_text())]);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_aligned_and_html_escaped() {
        let mut t = Table::new("T", &["name", "µs"]);
        t.row(vec!["a<b".into(), "1.5".into()]).row(vec!["long name".into()]);
        t.note("n");
        let text = t.to_text();
        assert_eq!(text, "T\nname       µs\n---------  ---\na<b        1.5\nlong name\nn\n");
        let html = t.to_html();
        assert!(html.contains("a&lt;b"));
        assert_eq!(html.matches("<tr>").count(), 3);
    }
}
