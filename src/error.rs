//! The contract's errors. Every helper that refuses a call raises one of these, with a message
//! that names the parameter and the value, so a client can act on the SQLSTATE alone.
//!
//! Domain logic returns `Result<_, ContractError>` (plain Rust, unit-testable without a server);
//! the `#[pg_extern]` wrapper turns an `Err` into a Postgres ERROR with `.or_raise()`.

#![forbid(unsafe_code)]

use pgrx::prelude::*;
use std::borrow::Cow;
use std::fmt::Display;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
    /// 22004: a required argument is NULL.
    #[error("{0} must not be NULL")]
    NullArgument(Cow<'static, str>),
    /// 22023: an argument out of range or not one of the allowed values.
    #[error("{param}: {reason}")]
    InvalidParameter { param: Cow<'static, str>, reason: String },
    /// 23505: an idempotency key reused with different parameters.
    #[error("{0}")]
    UniqueViolation(String),
    // The three below are raised today by the plpgsql helpers (sql/events.sql, sql/queues.sql,
    // sql/money.sql) with the same SQLSTATEs; they stay here so the whole table of the contract
    // maps in one place for the native code.
    /// 40001: an append whose expected version does not match the stream.
    #[error("{0}")]
    SerializationFailure(String),
    /// 55000: a status change that the state machine forbids.
    #[error("{0}")]
    NotInPrerequisiteState(String),
    /// P0002: the row named does not exist.
    #[error("{0}")]
    NoDataFound(String),
    /// EW001: a wallet debit or hold that would take the available balance below its floor.
    #[error("{0}")]
    InsufficientFunds(String),
    /// EW002: a wallet account that is frozen or closed.
    #[error("{0}")]
    AccountNotActive(String),
}

/// The contract's own SQLSTATEs (class EW: easymo wallets), which Postgres does not define.
pub const INSUFFICIENT_FUNDS: &[u8; 5] = b"EW001";
pub const ACCOUNT_NOT_ACTIVE: &[u8; 5] = b"EW002";

impl ContractError {
    /// 22023 for `param`, with a reason that should quote the offending value.
    pub fn invalid(param: impl Into<Cow<'static, str>>, reason: impl Display) -> Self {
        ContractError::InvalidParameter { param: param.into(), reason: reason.to_string() }
    }

    /// The same error about an element of an array argument: `p_transfers[2].amount` for
    /// `p_amount` (the element's field is the parameter's name without its `p_`).
    pub fn in_element(self, array: &str, index: usize) -> Self {
        let name = |param: &str| format!("{array}[{index}].{}", param.strip_prefix("p_").unwrap_or(param));
        match self {
            ContractError::NullArgument(param) => ContractError::NullArgument(name(&param).into()),
            ContractError::InvalidParameter { param, reason } => {
                ContractError::InvalidParameter { param: name(&param).into(), reason }
            }
            other => other,
        }
    }

    /// The SQLSTATE as pgrx knows it (internal_error for the contract's own, which `raise`
    /// reports with their codes).
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            ContractError::InsufficientFunds(_) | ContractError::AccountNotActive(_) => ERRCODE_INTERNAL_ERROR,
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
        use crate::postgres::backend::raise_sqlstate;
        match &self {
            ContractError::InsufficientFunds(m) => raise_sqlstate(INSUFFICIENT_FUNDS, m, None),
            ContractError::AccountNotActive(m) => raise_sqlstate(ACCOUNT_NOT_ACTIVE, m, None),
            _ => raise(self.sqlstate(), self.to_string()),
        }
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
    value.ok_or(ContractError::NullArgument(param.into()))
}
