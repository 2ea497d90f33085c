//! Who is calling: `request_user_id()` as Rust code, for hot paths that record it without
//! running the SQL function.

#![forbid(unsafe_code)]

use crate::error::raise;
use crate::postgres::backend::setting;
use pgrx::prelude::*;

/// Exactly `request_user_id()` (sql/bootstrap.sql): `request.jwt.claims ->> 'sub'` when
/// `request.jwt.claims` is set, else the legacy `request.jwt.claim.sub`, as uuid, else NULL. A
/// claim that is not a uuid is an error, as the SQL cast makes it.
pub fn request_user_id() -> Option<pgrx::Uuid> {
    let sub = match setting(c"request.jwt.claims") {
        Some(claims) => match serde_json::from_str::<serde_json::Value>(&claims) {
            Ok(v) => v.get("sub").and_then(|s| match s {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }),
            Err(e) => raise(
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for type json: request.jwt.claims: {e}"),
            ),
        },
        None => setting(c"request.jwt.claim.sub"),
    }?;
    match uuid::Uuid::parse_str(&sub) {
        Ok(u) => Some(pgrx::Uuid::from_bytes(*u.as_bytes())),
        Err(_) => raise(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type uuid: \"{sub}\""),
        ),
    }
}
