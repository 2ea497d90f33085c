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
    // The two below are also raised by the plpgsql helpers (sql/events.sql, sql/queues.sql,
    // sql/money.sql) with the same SQLSTATEs, as is 55000 for a status change the state machine
    // forbids (which no native path raises).
    /// 40001: an append whose expected version does not match the stream; a wallet transfer
    /// changed while it was read.
    #[error("{0}")]
    SerializationFailure(String),
    /// P0002: the row named does not exist.
    #[error("{0}")]
    NoDataFound(String),
    /// A call refused for a reason of its own (classes EW and EQ, see `Refusal`).
    #[error("{1}")]
    Refused(Refusal, String),
}

/// Why a call was refused for a reason of the contract's own: each has a SQLSTATE of its own
/// (class EW: easymo wallets, EQ: easymo queues; Postgres defines neither), so a client can tell
/// them apart without parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// EW001: a debit or hold would take the available balance below the account's floor.
    InsufficientFunds,
    /// EW002: an account is frozen or closed.
    AccountNotActive,
    /// EW003: the two accounts of a transfer are in different currencies.
    CurrencyMismatch,
    /// EW004: the same account on both sides of a transfer.
    SameAccount,
    /// EW005: posting more than a hold holds.
    ExceedsHold,
    /// EW006: posting or voiding a hold that is no longer open (posted, voided, expired), or a
    /// transfer that was never one.
    HoldNotOpen,
    /// EQ001: a queue receipt that is no longer current: the item was delivered again since, or
    /// is no longer in flight under it.
    StaleReceipt,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::InsufficientFunds,
        Refusal::AccountNotActive,
        Refusal::CurrencyMismatch,
        Refusal::SameAccount,
        Refusal::ExceedsHold,
        Refusal::HoldNotOpen,
        Refusal::StaleReceipt,
    ];

    pub const fn sqlstate(self) -> &'static [u8; 5] {
        match self {
            Refusal::InsufficientFunds => b"EW001",
            Refusal::AccountNotActive => b"EW002",
            Refusal::CurrencyMismatch => b"EW003",
            Refusal::SameAccount => b"EW004",
            Refusal::ExceedsHold => b"EW005",
            Refusal::HoldNotOpen => b"EW006",
            Refusal::StaleReceipt => b"EQ001",
        }
    }
}

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
            ContractError::Refused(..) => ERRCODE_INTERNAL_ERROR,
            ContractError::NullArgument(_) => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ContractError::InvalidParameter { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            ContractError::UniqueViolation(_) => ERRCODE_UNIQUE_VIOLATION,
            ContractError::SerializationFailure(_) => ERRCODE_T_R_SERIALIZATION_FAILURE,
            ContractError::NoDataFound(_) => ERRCODE_NO_DATA_FOUND,
        }
    }

    /// Raises this error as a Postgres ERROR; does not return.
    pub fn raise(self) -> ! {
        use crate::postgres::backend::raise_sqlstate;
        match &self {
            ContractError::Refused(r, m) => raise_sqlstate(r.sqlstate(), m, None),
            _ => raise(self.sqlstate(), self.to_string()),
        }
    }
}

/// A stored value as a message shows it: at most 64 characters, then "…" (a value a DBA wrote
/// by hand may be of any length; a message repeats the caller's own values, which were checked).
pub fn excerpt(value: &str) -> Cow<'_, str> {
    match value.char_indices().nth(64) {
        Some((end, _)) => Cow::Owned(format!("{}…", &value[..end])),
        None => Cow::Borrowed(value),
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

/// The value of a required integer argument within [min, max], or 22004 / 22023 naming it (the
/// native twin of bootstrap.sql's _check_range).
pub fn check_range(param: &'static str, value: Option<i32>, min: i32, max: i32) -> Result<i32, ContractError> {
    let v = required(value, param)?;
    if v < min || v > max {
        return Err(ContractError::invalid(param, format!("must be between {min} and {max}, got {v}")));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn excerpts_are_short() {
        assert_eq!(super::excerpt("10.5"), "10.5");
        let long = "9".repeat(1000);
        assert_eq!(super::excerpt(&long), format!("{}…", "9".repeat(64)));
        assert_eq!(super::excerpt(&"é".repeat(65)).chars().count(), 65);
    }
}
