//! Who the caller is, and acting as a table's owner for one statement.

use pgrx::pg_sys;
use std::ffi::CStr;

/// Acts with `owner`'s privileges, in a security-restricted context (no SET ROLE, no temp
/// objects), as Postgres does for RI checks, until dropped. Dropped also when an ERROR unwinds
/// through it; transaction abort would restore the identity too.
pub struct OwnerGuard {
    saved_user: pg_sys::Oid,
    saved_context: i32,
}

impl OwnerGuard {
    pub fn become_owner(owner: pg_sys::Oid) -> OwnerGuard {
        let mut saved_user = pg_sys::Oid::INVALID;
        let mut saved_context = 0;
        // SAFETY: plain backend state getters and setters, restored on drop.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                saved_context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
        }
        OwnerGuard { saved_user, saved_context }
    }
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        // SAFETY: restores what `become_owner` saved.
        unsafe { pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context) };
    }
}

/// Runs `f` as `owner` (see OwnerGuard).
pub fn as_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let _guard = OwnerGuard::become_owner(owner);
    f()
}

/// Whether the current user has the privileges of role `name` (false when no such role).
pub fn caller_has_role(name: &CStr) -> bool {
    // SAFETY: syscache lookups; missing_ok.
    unsafe {
        let role = pg_sys::get_role_oid(name.as_ptr(), true);
        role != pg_sys::Oid::INVALID && pg_sys::has_privs_of_role(pg_sys::GetUserId(), role)
    }
}

/// Whether the caller may see what service_role sees: a superuser, the owner of the extension's
/// tables (`owner`), or a role with service_role's privileges (PostgREST's service key).
pub fn caller_is_service(owner: pg_sys::Oid) -> bool {
    let user = super::backend::current_user();
    // SAFETY: a syscache read (superuser_arg caches its answer).
    user == owner || unsafe { pg_sys::superuser_arg(user) } || caller_has_role(c"service_role")
}
