//! Reading an account's sealed primary token for use against the API.

use crate::config;
use crate::error::{PullsyncError, Result};
use pgrx::prelude::*;
use pgrx::Uuid;

/// The plaintext primary token of an account. The error names the token row, never the
/// token.
pub fn open_primary_token(account_id: Uuid) -> Result<String> {
    let row: Option<(Option<Uuid>, Option<String>)> = Spi::connect(|client| {
        let table = client.select(
            "SELECT id, access_token_encrypted FROM pullsync.workspace_threads_tokens
              WHERE workspace_threads_account_id = $1 AND is_primary",
            Some(1),
            &[account_id.into()],
        )?;
        if table.is_empty() {
            return Ok::<_, pgrx::spi::SpiError>(None);
        }
        Ok(Some(table.first().get_two::<Uuid, String>()?))
    })?;
    let (Some(token_id), Some(sealed)) = row.unwrap_or((None, None)) else {
        return Err(PullsyncError::NotFound {
            message: format!("account {account_id} has no primary token"),
            hint: "Store one with pullsync.threads_add_account().".into(),
        });
    };
    config::sealing_key()?
        .open(&sealed)
        .map_err(|reason| PullsyncError::Unsealable {
            what: format!("token {token_id} of account {account_id}"),
            reason,
        })
}
