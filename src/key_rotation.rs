//! `pullsync.rotate_encryption_key(new_key)`: every sealed value of every source (its
//! `SourceSpec::sealed`) opened with the key in use and sealed again with the new one, in
//! one transaction. Afterwards the old key opens nothing.

use crate::config;
use crate::error::{PullsyncError, Result};
use crate::pg_error::{required, OrRaise};
use crate::registry::{self, Sealed};
use pgrx::prelude::*;
use pullsync_core::crypto::SealingKey;
use serde_json::{json, Map, Value};

fn rotate(new_key: &str) -> Result<Value> {
    let new = SealingKey::from_base64(new_key).map_err(|_| {
        PullsyncError::invalid(
            "new_key is not a key: it must be base64 of 32 bytes",
            "Generate one with: openssl rand -base64 32",
        )
    })?;
    let old = config::sealing_key()?;
    if old.is_same_key(&new) {
        return Err(PullsyncError::invalid(
            "new_key is the key already in use",
            "Pass a newly generated key.",
        ));
    }
    let mut counts = Map::new();
    Spi::connect_mut(|client| {
        for sealed in registry::all().iter().flat_map(|s| s.sealed.iter()) {
            let Sealed {
                table,
                column,
                what,
            } = sealed;
            // Locked, so no writer can seal a value with the old key behind this loop.
            let rows = client.update(
                &format!("SELECT ctid::text, {column} FROM {table} WHERE {column} IS NOT NULL FOR UPDATE"),
                None,
                &[],
            )?;
            let mut resealed = Vec::with_capacity(rows.len());
            for row in rows {
                let ctid: String = row.get(1)?.unwrap_or_default();
                let sealed: String = row.get(2)?.unwrap_or_default();
                let moved =
                    old.reseal(&sealed, &new)
                        .map_err(|reason| PullsyncError::Unsealable {
                            what: format!("{what} at {table} {ctid}"),
                            reason,
                        })?;
                resealed.push((ctid, moved));
            }
            let n = resealed.len();
            let (ctids, moved): (Vec<String>, Vec<String>) = resealed.into_iter().unzip();
            client.update(
                &format!(
                    "UPDATE {table} t SET {column} = v.sealed
                       FROM unnest($1::text[], $2::text[]) AS v(ctid, sealed)
                      WHERE t.ctid = v.ctid::tid"
                ),
                None,
                &[ctids.into(), moved.into()],
            )?;
            // Per table: a table with several sealed columns counts the values of all.
            let key = table.trim_start_matches("pullsync.").to_string();
            let before = counts.get(&key).and_then(Value::as_u64).unwrap_or(0);
            counts.insert(key, json!(before + n as u64));
        }
        Ok::<_, PullsyncError>(())
    })?;
    Ok(json!({
        "resealed": counts,
        "next": "Write the new key into the file named by pullsync.encryption_key_file now (mode 0600): until then nothing can open the resealed values. No reload is needed; the file is read at each use.",
    }))
}

/// Re-seals every sealed value under `new_key`. Superuser only.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rotate_encryption_key(new_key: Option<String>) -> pgrx::JsonB {
    crate::plumbing::standby::require_primary("rotate_encryption_key").or_raise();
    let new_key = required(new_key, "new_key");
    pgrx::JsonB(rotate(&new_key).or_raise())
}
