//! Who calls a REST function, and what it may do.
//!
//! The REST functions are SECURITY INVOKER. At their entry PostgreSQL's current user is the
//! role whose code called: the session's role, the owner of a SECURITY DEFINER function that
//! called, the table's owner when ANALYZE evaluates an index expression. That is the role a
//! source belongs to and is checked against; the session's role (`GetOuterUserId()`) is not,
//! since another role's code can run in that session. Inside a SECURITY DEFINER function
//! that caller would be lost, so each function switches to the extension's owner itself, as
//! fmgr does for SECURITY DEFINER (`SECURITY_LOCAL_USERID_CHANGE`), after noting the caller;
//! its `search_path` is pinned by the function's `SET` clause.

use super::store;
use crate::error::{PullsyncError, Result};
use crate::plumbing::prepared;
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

pub struct Caller {
    oid: pg_sys::Oid,
    pub name: String,
}

/// Runs `work` for the role that called `function`, with the extension owner's rights.
/// Refused (42501) inside a security-restricted operation: there the current user is a
/// role whose code a maintenance command or a REST write runs, not one that chose to call.
pub fn enter<T>(function: &str, work: impl FnOnce(&Caller) -> Result<T>) -> Result<T> {
    // SAFETY: reads this backend's security context.
    if unsafe { pg_sys::InSecurityRestrictedOperation() } {
        return Err(PullsyncError::Forbidden {
            message: format!(
                "cannot run pullsync.{function} inside a security-restricted operation"
            ),
            hint: "REST sources are managed and pulled by a role's own statements, not from code run on another role's behalf (an index expression under ANALYZE, a materialized view's refresh, a trigger of a REST source's target).".into(),
        });
    }
    // SAFETY: the current user, as every privilege check of this statement sees it.
    let oid = unsafe { pg_sys::GetUserId() };
    let caller = Caller {
        oid,
        name: role_name(oid)?,
    };
    let owner = prepared::read_one::<pg_sys::Oid>(
        "SELECT e.extowner FROM pg_catalog.pg_extension e
          WHERE e.extname OPERATOR(pg_catalog.=) 'pg_pullsync'",
        &[],
    )?
    .ok_or_else(|| PullsyncError::Internal("pg_pullsync is not installed here".into()))?;
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: the pair fmgr's SECURITY DEFINER call uses; an ERROR before the restore below
    // aborts the (sub)transaction, which restores both as it does for SECURITY DEFINER.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let result = work(&caller);
    // SAFETY: restores what was saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

fn role_name(oid: pg_sys::Oid) -> Result<String> {
    // SAFETY: noerr = true returns NULL for an unknown role instead of raising.
    let name = unsafe { pg_sys::GetUserNameFromId(oid, true) };
    if name.is_null() {
        return Err(PullsyncError::Internal(
            "the calling role has no name".into(),
        ));
    }
    // SAFETY: a NUL-terminated name palloc'd by the call above.
    Ok(unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned())
}

impl Caller {
    /// Refuses (42501) unless the caller has the privileges of the role that owns source
    /// `name` (is it, inherits it, or is a superuser): PostgreSQL's rule for using an
    /// object as its owner. The refusal names neither the owner nor the configuration.
    pub fn may_use(&self, name: &str) -> Result<()> {
        let owner = store::owner_of(name)?;
        let owner = CString::new(owner)
            .map_err(|_| PullsyncError::Internal("a role name with NUL".into()))?;
        // SAFETY: missing_ok = true returns InvalidOid for a dropped role; the checks read
        // the catalogs inside this transaction.
        let allowed = unsafe {
            let owner = pg_sys::get_role_oid(owner.as_ptr(), true);
            if owner == pg_sys::InvalidOid {
                pg_sys::superuser_arg(self.oid)
            } else {
                pg_sys::has_privs_of_role(self.oid, owner)
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(PullsyncError::Forbidden {
                message: format!("permission denied for REST source {name}"),
                hint: "Only the role that added a REST source, roles with its privileges (members that inherit it, or SET ROLE to it) and superusers may change, pull, queue, reconcile, retry, schedule or drop it.".into(),
            })
        }
    }
}
