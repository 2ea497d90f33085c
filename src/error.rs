//! The contract's errors. Every helper that refuses a call raises one of these, with a message
//! that names the parameter and the value, so a client can act on the SQLSTATE alone.
//!
//! Domain logic returns `Result<_, ContractError>` (plain Rust, unit-testable without a server);
//! the `#[pg_extern]` wrapper turns an `Err` into a Postgres ERROR with `.or_raise()`.

#![forbid(unsafe_code)]

use pgrx::prelude::*;
use std::fmt::Display;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
    /// 22004: a required argument is NULL.
    #[error("{0} must not be NULL")]
    NullArgument(&'static str),
    /// 22023: an argument out of range or not one of the allowed values.
    #[error("{param}: {reason}")]
    InvalidParameter { param: &'static str, reason: String },
    /// 23505: an idempotency key reused with different parameters.
    #[error("{0}")]
    UniqueViolation(String),
    // The three below are raised today by the plpgsql helpers (sql/events.sql, sql/queues.sql,
    // sql/money.sql) with the same SQLSTATEs; they stay here so the whole table of the contract
    // maps in one place for the native code.
    /// 40001: an append whose expected version does not match the stream.
    #[error("{0}")]
    #[allow(dead_code)]
    SerializationFailure(String),
    /// 55000: a status change that the state machine forbids.
    #[error("{0}")]
    #[allow(dead_code)]
    NotInPrerequisiteState(String),
    /// P0002: the row named does not exist.
    #[error("{0}")]
    #[allow(dead_code)]
    NoDataFound(String),
}

impl ContractError {
    /// 22023 for `param`, with a reason that should quote the offending value.
    pub fn invalid(param: &'static str, reason: impl Display) -> Self {
        ContractError::InvalidParameter { param, reason: reason.to_string() }
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            ContractError::NullArgument(_) => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ContractError::InvalidParameter { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            ContractError::UniqueViolation(_) => ERRCODE_UNIQUE_VIOLATION,
            ContractError::SerializationFailure(_) => ERRCODE_T_R_SERIALIZATION_FAILURE,
            ContractError::NotInPrerequisiteState(_) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            ContractError::NoDataFound(_) => ERRCODE_NO_DATA_FOUND,
        }
    }

    /// Raises this error as a Postgres ERROR; does not return.
    pub fn raise(self) -> ! {
        raise(self.sqlstate(), self.to_string())
    }
}

/// Raises an ERROR with any SQLSTATE (for errors outside the contract's list, e.g. the
/// invalid_text_representation a bad uuid cast gives); does not return.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(code, message, function_name!()).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

pub trait OrRaise<T> {
    /// The value, or the contract error raised as a Postgres ERROR.
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, ContractError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| e.raise())
    }
}

/// The value of a required argument, or 22004 naming it.
pub fn required<T>(value: Option<T>, param: &'static str) -> Result<T, ContractError> {
    value.ok_or(ContractError::NullArgument(param))
}
