//! Problems found in a run or a check, kept as data: one bad row is a line in
//! the report, never an abort.

use serde::Serialize;

/// How serious a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Note,
    /// The letter goes out, but someone should look.
    Warning,
    /// The row (or the whole campaign) cannot be rendered.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding, located as precisely as we can: the file, then a line in it,
/// then (for CSV) the data row and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The 1-based data row of the CSV (the header is row 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(severity: Severity, file: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity,
            file: file.into(),
            line: None,
            row: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    pub fn at_row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn in_column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }
}

impl std::fmt::Display for Problem {
    /// `file:line: severity: [row N, column `c`: ]message`, the shape editors
    /// and CI logs understand.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: ", self.severity)?;
        match (&self.row, &self.column) {
            (Some(row), Some(col)) => write!(f, "row {row}, column `{col}`: ")?,
            (Some(row), None) => write!(f, "row {row}: ")?,
            (None, Some(col)) => write!(f, "column `{col}`: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_row_and_column() {
        let p = Problem::new(Severity::Error, "r.csv", "is not an address")
            .at_line(7)
            .at_row(6)
            .in_column("email");
        assert_eq!(
            p.to_string(),
            "r.csv:7: error: row 6, column `email`: is not an address"
        );
    }

    #[test]
    fn severities_order_from_note_to_error() {
        assert!(Severity::Note < Severity::Warning && Severity::Warning < Severity::Error);
    }
}
