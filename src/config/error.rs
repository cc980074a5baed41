//! Errors that point the operator at a file, line and column.
//!
//! Invariants:
//! - `line` and `col` are 1-based; `col` counts characters, not bytes, so it
//!   matches what an editor shows. Both are 0 only for errors that concern
//!   the file as a whole (it could not be read), and only then does `Display`
//!   leave them out.
//! - A `ConfigErrors` returned by `Config::load`/`Config::parse` is never
//!   empty and is sorted by position, so the operator reads it top to bottom.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line, or 0 when the error is not about a place in the file.
    pub line: usize,
    /// 1-based column in characters, or 0 together with `line`.
    pub col: usize,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigError {
    /// An error at the start of `span`, a byte range into `source`.
    pub(super) fn at(path: &Path, source: &str, span: Range<usize>, message: String) -> Self {
        let (line, col) = line_col(source, span.start);
        ConfigError {
            path: path.to_path_buf(),
            line,
            col,
            message,
        }
    }

    /// An error about the file as a whole, such as failing to read it.
    pub(super) fn whole_file(path: &Path, message: String) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            line: 0,
            col: 0,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        if self.line == 0 {
            write!(f, "{path}: {}", self.message)
        } else {
            write!(f, "{path}:{}:{}: {}", self.line, self.col, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file, in file order.
///
/// The file is validated as a whole so that the operator can fix all
/// mistakes in one edit instead of discovering them one reload at a time.
#[derive(Debug, thiserror::Error)]
#[error("{}", Lines(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Sorts by position; the sort is stable, so errors at the same place
    /// keep the order in which validation found them.
    pub(super) fn new(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.line, e.col));
        ConfigErrors { errors }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

/// Displays one error per line, without a trailing newline.
struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Converts a byte offset into a 1-based (line, column-in-characters) pair.
///
/// Offsets past the end clamp to the end and offsets inside a multi-byte
/// character move back to its first byte, so no input can make this panic.
pub(super) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = "ab\ncd\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 1), (1, 2));
        assert_eq!(line_col(s, 2), (1, 3)); // the newline itself
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 4), (2, 2));
        assert_eq!(line_col(s, 6), (3, 1));
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        // 'é' is two bytes, '→' three.
        let s = "é→x\n";
        assert_eq!(line_col(s, 5), (1, 3));
        assert_eq!(line_col(s, 6), (1, 4));
    }

    #[test]
    fn line_col_never_panics() {
        let s = "aé\nb";
        assert_eq!(line_col(s, 2), (1, 2)); // inside 'é': back to its start
        assert_eq!(line_col(s, 1000), (2, 2));
        assert_eq!(line_col("", 7), (1, 1));
    }

    #[test]
    fn line_col_handles_crlf() {
        let s = "a = 1\r\nb = 2\r\n";
        assert_eq!(line_col(s, 7), (2, 1));
        assert_eq!(line_col(s, 11), (2, 5));
    }

    #[test]
    fn display_with_and_without_position() {
        let at = ConfigError {
            path: PathBuf::from("/etc/mcr.toml"),
            line: 3,
            col: 9,
            message: "bad".into(),
        };
        assert_eq!(at.to_string(), "/etc/mcr.toml:3:9: bad");
        let whole = ConfigError::whole_file(Path::new("/etc/mcr.toml"), "cannot read".into());
        assert_eq!(whole.to_string(), "/etc/mcr.toml: cannot read");

        let all = ConfigErrors::new(vec![at.clone(), whole.clone()]);
        assert_eq!(
            all.to_string(),
            "/etc/mcr.toml: cannot read\n/etc/mcr.toml:3:9: bad"
        );
    }
}
