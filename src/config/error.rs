//! Problems found in operator files, each tied to a file and, where known, a line.
//!
//! Every message is one sentence that says what is wrong and what to change, so that
//! `stsedge check`, the logs and the admin API can show it as it is.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where a problem is: a file, and the line and column when the problem is inside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Location {
    pub fn file(file: &Path) -> Self {
        Location {
            file: file.to_path_buf(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// What sort of problem, for metrics labels and for callers that treat them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML, or a key or type the format does not have.
    Syntax,
    /// Valid TOML with a value that breaks a rule (range, name syntax, RFC 8461).
    Invalid,
    /// A certificate or key that cannot be used.
    Certificate,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Io => "io",
            ProblemKind::Syntax => "syntax",
            ProblemKind::Invalid => "invalid",
            ProblemKind::Certificate => "certificate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{location}: {message}")]
pub struct ConfigError {
    pub location: Location,
    pub kind: ProblemKind,
    pub message: String,
}

impl ConfigError {
    pub fn new(location: Location, kind: ProblemKind, message: impl Into<String>) -> Self {
        ConfigError {
            location,
            kind,
            message: message.into(),
        }
    }

    pub fn io(path: &Path, err: &std::io::Error) -> Self {
        let hint = match err.kind() {
            std::io::ErrorKind::NotFound => "create it or fix the path that names it",
            std::io::ErrorKind::PermissionDenied => "make it readable by the user stsedge runs as",
            _ => "check the file and the disk",
        };
        ConfigError::new(
            Location::file(path),
            ProblemKind::Io,
            format!("cannot read it ({err}); {hint}"),
        )
    }
}

/// Turns byte spans of one parsed file into locations.
pub struct SourceText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl SourceText<'_> {
    pub fn at(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..start].chars().count() + 1;
        Location {
            file: self.path.to_path_buf(),
            line: Some(line),
            column: Some(column),
        }
    }

    pub fn error(
        &self,
        span: Range<usize>,
        kind: ProblemKind,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(self.at(span), kind, msg)
    }

    /// A TOML syntax or schema error, with serde's wording made to name the fix.
    pub fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let location = match err.span() {
            Some(span) => self.at(span),
            None => Location::file(self.path),
        };
        let message = err.message().trim_end_matches('.').replace('\n', " ");
        let hint = if message.starts_with("unknown field") {
            "; remove it or correct its spelling"
        } else if message.starts_with("invalid type") {
            "; write the value with the type shown"
        } else {
            ""
        };
        ConfigError::new(location, ProblemKind::Syntax, format!("{message}{hint}"))
    }
}

/// Resolves a path from a config file: relative paths are relative to the directory of
/// `stsedge.toml` (SPEC §2).
pub fn resolve_path(base_dir: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_lines_and_columns() {
        let src = SourceText {
            path: Path::new("t.toml"),
            text: "a = 1\nbb = 2\n",
        };
        let loc = src.at(6..8);
        assert_eq!((loc.line, loc.column), (Some(2), Some(1)));
        assert_eq!(loc.to_string(), "t.toml:2:1");
        let loc = src.at(11..12);
        assert_eq!((loc.line, loc.column), (Some(2), Some(6)));
    }
}
