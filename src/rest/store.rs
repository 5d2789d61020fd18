//! SPI side of the REST source: its row in `pullsync.rest_sources`, the checks of its
//! target table, and each page written with the owner's rights together with where the
//! run stands.

use crate::error::{PullsyncError, Result, SqlState};
use crate::jobs::quarantine::{store_or_quarantine, Attempt, Table, Written};
use crate::plumbing::prepared;
use crate::plumbing::search_path;
use crate::plumbing::txn::Txn;
use crate::secrets::Secrets;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::rest::config::RestConfig;
use pullsync_core::rest::incremental::Backfill;
use pullsync_core::rest::paging::{Position, Rows};
use serde_json::Value;

/// A source as its runs read it: the configuration checked again, the secret opened.
#[derive(Clone)]
pub struct Stored {
    pub name: String,
    pub config: RestConfig,
    pub secret: Option<String>,
    pub owner: String,
    pub high_water: Option<String>,
    /// An unfinished run, to be resumed.
    pub run: Option<Run>,
    /// An unfinished backfill in date windows, to be resumed.
    pub backfill: Option<Backfill>,
}

#[derive(Clone)]
pub struct Run {
    pub position: Position,
    pub since: Option<String>,
    pub high_water: Option<String>,
}

fn not_found(name: &str) -> PullsyncError {
    PullsyncError::NotFound {
        message: format!("REST source {name} does not exist"),
        hint: "Add it with pullsync.rest_add_source(name, config).".into(),
    }
}

pub fn load(name: &str) -> Result<Stored> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT config, secret_encrypted, owner_role::text, high_water, run_position, run_since, run_high_water
               FROM pullsync.rest_sources WHERE name = $1",
            Some(1),
            &[name.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, PullsyncError>(None);
        }
        let r = rows.first();
        Ok(Some((
            r.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null),
            r.get::<String>(2)?,
            r.get::<String>(3)?.unwrap_or_default(),
            r.get::<String>(4)?,
            r.get::<JsonB>(5)?.map(|j| j.0),
            r.get::<String>(6)?,
            r.get::<String>(7)?,
        )))
    })?;
    let Some((config, sealed, owner, high_water, position, run_since, run_high_water)) = row else {
        return Err(not_found(name));
    };
    let (config, _) = RestConfig::parse(&config, false)?;
    let secret = sealed
        .map(|s| crate::secrets::open(&s, || format!("secret of REST source {name}")))
        .transpose()?;
    let backfill = position.as_ref().and_then(Backfill::from_stored);
    let run = match position.filter(|_| backfill.is_none()) {
        Some(p) => Some(Run {
            position: serde_json::from_value(p).map_err(|e| {
                PullsyncError::Internal(format!(
                    "REST source {name} has an unreadable position: {e}"
                ))
            })?,
            since: run_since,
            high_water: run_high_water,
        }),
        None => None,
    };
    Ok(Stored {
        name: name.to_string(),
        config,
        secret,
        owner,
        high_water,
        run,
        backfill,
    })
}

/// The role that owns source `name` (whose rights its writes have).
pub fn owner_of(name: &str) -> Result<String> {
    // A scalar subquery: one row, null when there is no such source.
    prepared::read_one::<String>(
        "SELECT (SELECT owner_role::text FROM pullsync.rest_sources WHERE name = $1)",
        &[name.into()],
    )?
    .ok_or_else(|| not_found(name))
}

/// The target as a quoted, qualified name, after checking that it exists, has the mapped
/// columns and a unique key on the key columns, and that `owner` may write it.
pub fn check_target(owner: &str, config: &RestConfig) -> Result<String> {
    let target = &config.target;
    let table = Spi::get_one_with_args::<String>(
        "SELECT to_regclass($1)::text",
        &[target.table.as_str().into()],
    )?
    .ok_or_else(|| {
        PullsyncError::invalid(
            format!("config.target.table {:?} does not exist", target.table),
            "Create the table first, or name it with its schema (\"public.issues\").",
        )
    })?;
    let columns: Vec<(String, String)> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
              WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
            None,
            &[table.as_str().into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((
                row.get(1)?.unwrap_or_default(),
                row.get(2)?.unwrap_or_default(),
            ));
        }
        Ok::<_, PullsyncError>(out)
    })?;
    for (column, _) in &target.columns {
        if !columns.iter().any(|(c, _)| c == column) {
            return Err(PullsyncError::invalid(
                format!("config.target.columns.{column}: {table} has no column {column}"),
                "Map paths to columns the table has.",
            ));
        }
    }
    if let Some(extra) = &target.extra {
        if !columns.iter().any(|(c, t)| c == extra && t == "jsonb") {
            return Err(PullsyncError::invalid(
                format!("config.target.extra: {table} has no jsonb column {extra}"),
                "Name a jsonb column for the fields no column takes, or leave extra out.",
            ));
        }
    }
    if let Some(deletes) = &config.deletes {
        let column = &deletes.column;
        if !columns
            .iter()
            .any(|(c, t)| c == column && t == "timestamp with time zone")
        {
            return Err(PullsyncError::invalid(
                format!("config.deletes.column: {table} has no timestamptz column {column}"),
                "Add the column (ALTER TABLE … ADD COLUMN deleted_at timestamptz), or name one the table has.",
            ));
        }
    }
    let mut keys = target.key_columns(&config.primary_key);
    keys.sort();
    let unique = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
             SELECT 1 FROM pg_catalog.pg_index i
              WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indpred IS NULL
                AND i.indexprs IS NULL
                AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                       FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = $2)",
        &[table.as_str().into(), keys.clone().into()],
    )?
    .unwrap_or(false);
    if !unique {
        return Err(PullsyncError::invalid(
            format!(
                "config.primary_key: {table} has no primary key or unique index on ({})",
                keys.join(", ")
            ),
            "Rows are upserted by their key: add a primary key or unique index on those columns.",
        ));
    }
    let allowed = Spi::get_one_with_args::<bool>(
        "SELECT has_table_privilege($1, $2::regclass, 'INSERT')
            AND has_table_privilege($1, $2::regclass, 'UPDATE')
            AND has_table_privilege($1, $2::regclass, 'SELECT')",
        &[owner.into(), table.as_str().into()],
    )?
    .unwrap_or(false);
    if !allowed {
        return Err(PullsyncError::Forbidden {
            message: format!(
                "permission denied: role {owner} may not insert into, update and read {table}"
            ),
            hint: format!(
                "A REST source writes with the rights of the role that adds it: grant {owner} INSERT, UPDATE and SELECT on {table}, or add the source as a role that has them."
            ),
        });
    }
    Ok(table)
}

/// Runs `work` with the rights of `role` (its privileges, its row level security), in a
/// subtransaction whose end restores this process's user whatever happens. As PostgreSQL
/// runs a table owner's code in REFRESH MATERIALIZED VIEW and index builds: a
/// security-restricted operation (no SET ROLE, no temporary objects) in a GUC nest level of
/// its own with search_path pinned, so nothing the owner's triggers, defaults, checks or
/// policies set (search_path above all, even with `set_config(…, false)`) outlives the write
/// and reaches the statements the extension runs afterwards with its own rights.
pub fn as_role<T>(role: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let oid = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[role.into()],
    )?
    .ok_or_else(|| PullsyncError::Forbidden {
        message: format!("role {role}, whose rights this source's writes have, does not exist"),
        hint: "Add the source again as an existing role.".into(),
    })?;
    Txn::Subtransaction.run(|| {
        let mut user = pg_sys::InvalidOid;
        let mut context = 0;
        // SAFETY: the sequence of ExecRefreshMatView; an ERROR aborts the subtransaction,
        // which pops the nest level and restores the user and context.
        let nest_level = unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(
                oid,
                context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
            pg_sys::NewGUCNestLevel()
        };
        search_path::restrict_in_nest_level();
        let result = work();
        // SAFETY: undoes every setting made since NewGUCNestLevel (isCommit = false), then
        // restores what was saved above.
        unsafe {
            pg_sys::AtEOXact_GUC(false, nest_level);
            pg_sys::SetUserIdAndSecContext(user, context);
        }
        result
    })
}

/// Checks a configuration's fan-out parent query as its owner would run it.
pub type CheckParents = fn(owner: &str, config: &RestConfig) -> Result<()>;

/// Stores a new source owned by `owner`, or replaces one (`rest_alter_source`, which keeps
/// its owner), checked against the owner's rights. `new_secret`: the configuration carries
/// the auth secret (always when adding; when altering, only if auth is changed), else the
/// stored one is kept. `check_parents` checks a fan-out's parent query as the owner runs it
/// (parents.rs, which writes through this module). Returns the stored configuration (no
/// secret).
pub fn save(
    name: &str,
    config: &Value,
    owner: &str,
    (replace, new_secret): (bool, bool),
    check_parents: CheckParents,
) -> Result<Value> {
    pullsync_core::feed::validate::consumer_id(name).map_err(|_| {
        PullsyncError::invalid(
            format!("name {name:?} is not valid"),
            "Use 1 to 64 characters: letters, digits, '_', '.', '-'.",
        )
    })?;
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pullsync.rest_sources WHERE name = $1)",
        &[name.into()],
    )?
    .unwrap_or(false);
    match (exists, replace) {
        (true, false) => {
            return Err(PullsyncError::Conflict {
                message: format!("REST source {name} exists already"),
                hint: "Change it with pullsync.rest_alter_source(name, config), or drop it first."
                    .into(),
            })
        }
        (false, true) => return Err(not_found(name)),
        _ => {}
    }
    let (parsed, secret) = RestConfig::parse(config, new_secret)?;
    check_target(owner, &parsed)?;
    check_parents(owner, &parsed)?;
    let stored = RestConfig::without_secret(config);
    let refresh_token = if new_secret {
        pullsync_core::rest::config::refresh_token_given(config)
    } else {
        None
    };
    let (sealed, sealed_refresh) = match (&secret, &refresh_token) {
        (None, None) => (None, None),
        _ => {
            let key = Secrets::load()?;
            (
                secret.as_deref().map(|s| key.seal(s)),
                refresh_token.as_deref().map(|s| key.seal(s)),
            )
        }
    };
    // New credentials replace every token had with the old ones, and end a wait for them.
    Spi::run_with_args(
        "INSERT INTO pullsync.rest_sources AS r (name, config, secret_encrypted, owner_role, refresh_token_encrypted)
         VALUES ($1, $2, $3, $4, $6)
         ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config, owner_role = EXCLUDED.owner_role,
                secret_encrypted = CASE WHEN $5 THEN EXCLUDED.secret_encrypted ELSE r.secret_encrypted END,
                refresh_token_encrypted = CASE WHEN $5 THEN EXCLUDED.refresh_token_encrypted ELSE r.refresh_token_encrypted END,
                access_token_encrypted = CASE WHEN $5 THEN NULL ELSE r.access_token_encrypted END,
                access_token_expires_at = CASE WHEN $5 THEN NULL ELSE r.access_token_expires_at END,
                needs_reauth_at = CASE WHEN $5 THEN NULL ELSE r.needs_reauth_at END,
                needs_reauth_reason = CASE WHEN $5 THEN NULL ELSE r.needs_reauth_reason END,
                updated_at = now()",
        &[
            name.into(),
            JsonB(stored.clone()).into(),
            sealed.into(),
            owner.into(),
            new_secret.into(),
            sealed_refresh.into(),
        ],
    )?;
    Ok(stored)
}

/// A source's OAuth 2 tokens as committed (another run may have renewed them since this
/// one loaded the source), and why it waits for new credentials, if it does.
pub struct Tokens {
    pub refresh: Option<String>,
    pub access: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub needs_reauth: Option<String>,
}

pub fn load_tokens(name: &str) -> Result<Tokens> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT refresh_token_encrypted, access_token_encrypted, access_token_expires_at,
                    CASE WHEN needs_reauth_at IS NOT NULL THEN coalesce(needs_reauth_reason, '') END
               FROM pullsync.rest_sources WHERE name = $1",
            Some(1),
            &[name.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, PullsyncError>(None);
        }
        let r = rows.first();
        Ok(Some((
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<pgrx::datum::TimestampWithTimeZone>(3)?,
            r.get::<String>(4)?,
        )))
    })?;
    let (refresh, access, expires_at, needs_reauth) = row.ok_or_else(|| not_found(name))?;
    let key = Secrets::load()?;
    let open = |sealed: Option<String>, what: &str| {
        sealed
            .map(|s| key.open(&s, || format!("OAuth 2 {what} of REST source {name}")))
            .transpose()
    };
    Ok(Tokens {
        refresh: open(refresh, "refresh token")?,
        access: open(access, "access token")?,
        expires_at: expires_at.and_then(crate::pg_time::to_chrono),
        needs_reauth,
    })
}

/// Takes the lock under which one run of source `name` at a time renews its OAuth 2
/// tokens: held by the process (not the transaction), across the token request, until
/// `unlock_token_renewal` or the process's end; false while another process holds it.
pub fn try_lock_token_renewal(name: &str) -> Result<bool> {
    let taken = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pullsync.rest_oauth'), pg_catalog.hashtext($1))",
        &[name.into()],
    )?;
    Ok(taken.unwrap_or(false))
}

pub fn unlock_token_renewal(name: &str) -> Result<()> {
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('pullsync.rest_oauth'), pg_catalog.hashtext($1))",
        &[name.into()],
    )?;
    Ok(())
}

/// Keeps a new access token, sealed, with its expiry, and the refresh token the server
/// rotated to (sealed, in place of the spent one), in the caller's unit of work.
pub fn save_tokens(
    name: &str,
    access: &str,
    expires_at: Option<DateTime<Utc>>,
    refresh: Option<&str>,
) -> Result<()> {
    let key = Secrets::load()?;
    Spi::run_with_args(
        "UPDATE pullsync.rest_sources
            SET access_token_encrypted = $2, access_token_expires_at = $3,
                refresh_token_encrypted = coalesce($4, refresh_token_encrypted)
          WHERE name = $1",
        &[
            name.into(),
            key.seal(access).into(),
            expires_at.map(crate::pg_time::to_pg).into(),
            refresh.map(|r| key.seal(r)).into(),
        ],
    )?;
    Ok(())
}

/// Marks the source as waiting for new credentials (the authorization server refused its
/// grant): its access token goes, and no request is made until `rest_alter_source`.
pub fn needs_reauth(name: &str, reason: &str) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.rest_sources
            SET needs_reauth_at = now(), needs_reauth_reason = $2,
                access_token_encrypted = NULL, access_token_expires_at = NULL
          WHERE name = $1",
        &[name.into(), reason.into()],
    )?;
    Ok(())
}

/// `rest_alter_source`: the stored configuration with `patch`'s top-level keys in place of
/// its own, saved under the same owner. A new `base_url` takes the secret again.
pub fn alter(name: &str, patch: &Value, check_parents: CheckParents) -> Result<Value> {
    let (stored, has_secret, owner) = Spi::connect(|client| {
        let rows = client.select(
            "SELECT config, secret_encrypted IS NOT NULL, owner_role::text
               FROM pullsync.rest_sources WHERE name = $1",
            Some(1),
            &[name.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, PullsyncError>(None);
        }
        let r = rows.first();
        Ok(Some((
            r.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null),
            r.get::<bool>(2)?.unwrap_or(false),
            r.get::<String>(3)?.unwrap_or_default(),
        )))
    })?
    .ok_or_else(|| not_found(name))?;
    if RestConfig::patch_needs_secret(&stored, patch, has_secret) {
        return Err(PullsyncError::invalid(
            "config.base_url: a new base_url needs the secret again",
            "Give auth with its token, key or password in the same call: the sealed secret goes only to the base_url it was given for.",
        ));
    }
    let mut merged = stored;
    if let (Some(m), Some(p)) = (merged.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            m.insert(k.clone(), v.clone());
        }
    }
    let new_secret = patch.get("auth").is_some();
    save(name, &merged, &owner, (true, new_secret), check_parents)
}

pub fn drop_source(name: &str) -> Result<()> {
    let dropped = Spi::get_one_with_args::<bool>(
        "WITH d AS (DELETE FROM pullsync.rest_sources WHERE name = $1 RETURNING 1) SELECT EXISTS (SELECT 1 FROM d)",
        &[name.into()],
    )?
    .unwrap_or(false);
    if dropped {
        Ok(())
    } else {
        Err(not_found(name))
    }
}

/// Notes where a fresh run starts and the mark it sends.
pub fn begin_run(name: &str, since: Option<&str>) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.rest_sources SET run_position = $2, run_since = $3, run_high_water = NULL WHERE name = $1",
        &[
            name.into(),
            JsonB(serde_json::to_value(Position::Start).unwrap_or_default()).into(),
            since.into(),
        ],
    )?;
    Ok(())
}

/// Notes a backfill's windows before its first request, and the start it sends.
pub fn begin_backfill(name: &str, backfill: &Backfill, since: &str) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.rest_sources SET run_position = $2, run_since = $3, run_high_water = NULL WHERE name = $1",
        &[
            name.into(),
            JsonB(serde_json::to_value(backfill).unwrap_or_default()).into(),
            since.into(),
        ],
    )?;
    Ok(())
}

/// Writes a window's page as the owner, with the backfill's state after it; `mark`, once
/// every window is done, becomes the source's mark and ends the backfill.
pub fn write_backfill_page(
    source: &Stored,
    table: &str,
    rows: &Rows,
    backfill: &Backfill,
    mark: Option<&str>,
) -> Result<Written> {
    let written = upsert_or_quarantine(source, table, rows)?;
    match mark {
        None => Spi::run_with_args(
            "UPDATE pullsync.rest_sources SET run_position = $2, run_high_water = $3 WHERE name = $1",
            &[
                source.name.as_str().into(),
                JsonB(serde_json::to_value(backfill).unwrap_or_default()).into(),
                backfill.high_water.as_deref().into(),
            ],
        )?,
        Some(mark) => Spi::run_with_args(
            "UPDATE pullsync.rest_sources
                SET high_water = $2, run_position = NULL, run_since = NULL,
                    run_high_water = NULL, updated_at = now()
              WHERE name = $1",
            &[source.name.as_str().into(), mark.into()],
        )?,
    }
    Ok(written)
}

/// `rest_reconcile`'s deletes: as the owner, sets `column` to now() on the target's rows
/// whose key `listed` (a complete listing's keys, each as its columns' text) lacks, and
/// clears it on those it holds again. Returns (marked, unmarked).
pub fn mark_deletes(source: &Stored, column: &str, listed: &Value) -> Result<(i64, i64)> {
    let table = check_target(&source.owner, &source.config)?;
    let keys = source.config.target.key_columns(&source.config.primary_key);
    let key = keys
        .iter()
        .map(|k| format!("t.{}::text", pgrx::spi::quote_identifier(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let column = pgrx::spi::quote_identifier(column);
    // Anti- and semi-joins against the listed keys (hashed), not a probe per row.
    let listed_has = format!(
        "EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements($1::jsonb) l(k) WHERE l.k = pg_catalog.to_jsonb(ARRAY[{key}]))"
    );
    let mark = format!(
        "WITH m AS (UPDATE {table} t SET {column} = pg_catalog.now() WHERE t.{column} IS NULL AND NOT {listed_has} RETURNING 1)
         SELECT count(*) FROM m"
    );
    let unmark = format!(
        "WITH m AS (UPDATE {table} t SET {column} = NULL WHERE t.{column} IS NOT NULL AND {listed_has} RETURNING 1)
         SELECT count(*) FROM m"
    );
    as_role(&source.owner, || {
        let count = |sql: &str| {
            Spi::get_one_with_args::<i64>(sql, &[JsonB(listed.clone()).into()])
                .map(|n| n.unwrap_or(0))
                .map_err(PullsyncError::from)
        };
        Ok((count(&mark)?, count(&unmark)?))
    })
}

/// Where a REST source's rows its target would not take are kept.
const QUARANTINE: Table = Table {
    name: "pullsync.rest_quarantine",
    source: "source_name",
    item: "row_data",
    context: &["record_key"],
};

/// The upsert of rows into the source's target: `$1` the rows as a JSON array.
fn upsert_sql(source: &Stored, table: &str) -> String {
    let target = &source.config.target;
    let mut columns: Vec<&str> = target.columns.iter().map(|(c, _)| c.as_str()).collect();
    columns.extend(target.extra.as_deref());
    let keys = target.key_columns(&source.config.primary_key);
    let quoted = |c: &str| pgrx::spi::quote_identifier(c);
    let list = columns
        .iter()
        .map(|c| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !keys.iter().any(|k| k == *c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quoted(c)))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM pg_catalog.jsonb_populate_recordset(NULL::{table}, $1::jsonb)
         ON CONFLICT ({}) {on_conflict}",
        keys.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", ")
    )
}

/// An error that says the owner may not write (privileges, row level security), not that
/// a record is bad: it stops the run instead of quarantining records.
fn is_refusal(error: &PullsyncError) -> bool {
    // Forbidden is ours, 42501 also Postgres' own refusal caught from the write.
    error.sqlstate() == SqlState::INSUFFICIENT_PRIVILEGE
}

/// `rows`: the text of a JSON array of rows.
fn upsert(source: &Stored, sql: &str, rows: &str) -> Result<()> {
    as_role(&source.owner, || {
        Spi::run_with_args(sql, &[rows.into()])?;
        Ok(())
    })
}

/// `upsert` as an attempt: a refusal stops the write, any other error is the rows' fault.
fn attempt(source: &Stored, sql: &str, rows: &str) -> Attempt {
    match upsert(source, sql, rows) {
        Err(e) if is_refusal(&e) => Err(e),
        done => Ok(done),
    }
}

/// Rows an upsert statement takes at most: PostgreSQL holds a statement's rows (its
/// jsonb parameter, the recordset) several times over until it ends, so a page is written
/// in runs of rows to keep that to a small multiple of the run, not of the page.
const UPSERT_ROWS: usize = 1024;
const UPSERT_BYTES: usize = 256 << 10;

/// Keeps a row the target would not take, named by its key.
fn quarantine(source: &Stored, text: &str, reason: &str) -> Result<()> {
    let row: Value = serde_json::from_str(text)
        .map_err(|e| PullsyncError::Internal(format!("a REST row as JSON: {e}")))?;
    let key: Vec<String> = source
        .config
        .target
        .key_columns(&source.config.primary_key)
        .iter()
        .map(|k| pullsync_core::rest::path::scalar_text(&row[k.as_str()]).unwrap_or_default())
        .collect();
    let key = key.join(",");
    QUARANTINE.put(&source.name, row, reason, &[Some(key.as_str())])
}

/// Upserts rows set-based as the owner, a run of rows per statement; when a run fails for
/// a reason in the data, its rows one by one, and a row that still fails goes to
/// `pullsync.rest_quarantine` with the reason.
pub(super) fn upsert_or_quarantine(source: &Stored, table: &str, rows: &Rows) -> Result<Written> {
    let mut written = Written::default();
    if rows.is_empty() {
        return Ok(written);
    }
    let sql = upsert_sql(source, table);
    for (chunk, range) in rows.chunks(UPSERT_ROWS, UPSERT_BYTES) {
        let run = store_or_quarantine(
            range.len(),
            || attempt(source, &sql, &format!("[{chunk}]")),
            rows.iter().skip(range.start).take(range.len()),
            |text| attempt(source, &sql, &format!("[{text}]")),
            |text, reason| quarantine(source, text, reason),
        )?;
        written.stored += run.stored;
        written.quarantined += run.quarantined;
    }
    Ok(written)
}

/// Writes a page's rows into the target as the owner (rows the target will not take to
/// quarantine), and records where the run goes next (None: the run is done, and its
/// highest committed value becomes the mark the next run sends), in the caller's unit of
/// work.
pub fn write_page(
    source: &Stored,
    table: &str,
    rows: &Rows,
    next: Option<&Position>,
    run_high_water: Option<&str>,
) -> Result<Written> {
    let written = upsert_or_quarantine(source, table, rows)?;
    match next {
        Some(next) => Spi::run_with_args(
            "UPDATE pullsync.rest_sources SET run_position = $2, run_high_water = $3 WHERE name = $1",
            &[
                source.name.as_str().into(),
                JsonB(serde_json::to_value(next).unwrap_or_default()).into(),
                run_high_water.into(),
            ],
        )?,
        None => Spi::run_with_args(
            "UPDATE pullsync.rest_sources
                SET high_water = coalesce($2, high_water), run_position = NULL, run_since = NULL,
                    run_high_water = NULL, updated_at = now()
              WHERE name = $1",
            &[source.name.as_str().into(), run_high_water.into()],
        )?,
    }
    Ok(written)
}

/// `rest_retry_quarantined`: applies a source's quarantined rows again, oldest first;
/// those the target now takes are resolved, the others keep their (new) reason.
pub fn retry_quarantined(name: &str) -> Result<Value> {
    let source = load(name)?;
    let table = check_target(&source.owner, &source.config)?;
    let sql = upsert_sql(&source, &table);
    QUARANTINE.retry(name, ("name", name), |held| {
        attempt(&source, &sql, &format!("[{}]", held.item))
    })
}

/// The key values of the target's rows, each as its key columns' text (reconciliation),
/// read with the owner's rights.
pub fn stored_keys(source: &Stored) -> Result<Vec<Vec<Option<String>>>> {
    let table = check_target(&source.owner, &source.config)?;
    let keys = source.config.target.key_columns(&source.config.primary_key);
    let select = keys
        .iter()
        .map(|k| format!("{}::text", pgrx::spi::quote_identifier(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT ARRAY[{select}] FROM {table}");
    as_role(&source.owner, || {
        Spi::connect(|client| {
            let rows = client.select(&sql, None, &[])?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.get::<Vec<Option<String>>>(1)?.unwrap_or_default());
            }
            Ok::<_, PullsyncError>(out)
        })
    })
}
