//! Typed errors of the kernel. Each variant names the field and the rule.

use thiserror::Error;

/// Errors about division codes and the division registry.
///
/// At the edge these become `INVALID_INPUT` (malformed or unknown codes) or an
/// internal error (reference data that cannot be loaded).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DivisionError {
    /// The text is not 2, 4, 6, 9 or 12 ASCII digits.
    #[error("division code `{0}` is malformed: it must be 2, 4, 6, 9 or 12 digits")]
    Malformed(String),
    /// The code has a valid shape but is not in the reference data of its level.
    #[error("division code `{code}` does not exist among the {level} codes")]
    Unknown {
        /// The code as given.
        code: String,
        /// The level whose file was searched.
        level: &'static str,
    },
    /// The code exists but is not at the level the field requires.
    #[error("division code `{code}` is a {actual} code, but a {expected} code is required")]
    WrongLevel {
        /// The code as given.
        code: String,
        /// The level required.
        expected: &'static str,
        /// The level of the code.
        actual: &'static str,
    },
    /// The reference data could not be read.
    #[error("failed to read division data file {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The reference data is inconsistent (bad row, unknown parent, unsorted duplicates).
    #[error("division data file {path} line {line}: {message}")]
    BadData {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the row.
        message: String,
    },
}

/// Errors of the kernel's value types other than division codes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// An identifier is not a UUID.
    #[error("`{field}` must be a UUID, got `{value}`")]
    BadId {
        /// The field name.
        field: &'static str,
        /// The rejected text.
        value: String,
    },
    /// A division code problem.
    #[error(transparent)]
    Division(#[from] DivisionError),
}
