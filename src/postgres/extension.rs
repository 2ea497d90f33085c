//! Acting as the extension's own script, for what Postgres allows only there.

use pgrx::pg_sys;
use std::ffi::CStr;

/// Restores the backend's "running an extension script" state when dropped, also when the SQL
/// inside raises an error (pgrx unwinds Rust frames on ERROR).
struct ScriptContext {
    creating: bool,
    object: pg_sys::Oid,
}

impl Drop for ScriptContext {
    fn drop(&mut self) {
        // SAFETY: restores what `in_extension_script` saved.
        unsafe {
            pg_sys::creating_extension = self.creating;
            pg_sys::CurrentExtensionObject = self.object;
        }
    }
}

/// Runs `f` as if inside extension `name`'s script (what pg_extension_config_dump requires).
pub fn in_extension_script<R>(name: &CStr, f: impl FnOnce() -> R) -> R {
    // SAFETY: the name is a valid C string; missing_ok = false raises a normal ERROR. The two
    // globals of commands/extension.h are backend-local and restored by the guard.
    let _context = unsafe {
        let extension = pg_sys::get_extension_oid(name.as_ptr(), false);
        let saved = ScriptContext { creating: pg_sys::creating_extension, object: pg_sys::CurrentExtensionObject };
        pg_sys::creating_extension = true;
        pg_sys::CurrentExtensionObject = extension;
        saved
    };
    f()
}
