//! Diagnostics: one problem in the user's files, located by file, line, column and YAML path.
//!
//! `check`, start-up and hot reload all report through this type, so the three can never
//! disagree about what is wrong or where.

use std::fmt;
use std::path::PathBuf;

/// One problem found while loading flows, mappings or schemas.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the file as a whole.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub col: u32,
    /// Where in the YAML document the problem sits (`actions.search.steps[0].call.backend`).
    pub yaml_path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: 0,
            col: 0,
            yaml_path: String::new(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn at(mut self, line: u32, col: u32) -> Self {
        self.line = line;
        self.col = col;
        self
    }

    pub fn path(mut self, yaml_path: impl Into<String>) -> Self {
        self.yaml_path = yaml_path.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col.max(1))?;
        }
        write!(f, ": error: {}", self.message)?;
        if !self.yaml_path.is_empty() {
            write!(f, "\n  at: {}", self.yaml_path)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Renders a list of diagnostics the way `check` prints them, with a closing count.
pub fn render_all(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push_str("\n\n");
    }
    let n = diagnostics.len();
    out.push_str(&format!(
        "{n} problem{} found",
        if n == 1 { "" } else { "s" }
    ));
    out
}
