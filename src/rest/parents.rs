//! SPI side of fan-out: the parent query, run as the source's owner the way its writes
//! run (store::as_role: the owner's rights, a security-restricted operation, search_path
//! pinned) and read-only besides; and each parent's position and high-water mark in
//! `pullsync.rest_parent_state`, written with each page of its children.

use super::store::{self, Run, Stored};
use crate::error::{PullsyncError, Result, SqlState};
use crate::jobs::quarantine::Written;
use pgrx::prelude::*;
use pgrx::{JsonB, PgList};
use pullsync_core::rest::config::RestConfig;
use pullsync_core::rest::fanout::{ForEach, Parent};
use pullsync_core::rest::paging::{Position, Rows};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::CString;

fn not_one_select(problem: &str) -> PullsyncError {
    PullsyncError::invalid(
        format!("config.for_each.query {problem}"),
        "Write one SELECT (a UNION or WITH of SELECTs too) that lists the parents; it only reads.",
    )
}

/// Whether `sql` parses into exactly one SELECT that only reads: no `INTO`, no `FOR
/// UPDATE`, no `WITH` holding an `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
fn check_one_select(sql: &str) -> Result<()> {
    let text = CString::new(sql).map_err(|_| not_one_select("holds a NUL character"))?;
    // SAFETY: parses the text in the current memory context; a syntax error raises an
    // ERROR, which the caller's (sub)transaction catches. The nodes are read only.
    unsafe {
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let statements = PgList::<pg_sys::RawStmt>::from_pg(list);
        if statements.len() != 1 {
            return Err(not_one_select("must be exactly one statement"));
        }
        let node = statements.get_ptr(0).map(|raw| (*raw).stmt);
        let Some(node) = node.filter(|n| pgrx::is_a(*n, pg_sys::NodeTag::T_SelectStmt)) else {
            return Err(not_one_select("must be a SELECT"));
        };
        let select = node as *mut pg_sys::SelectStmt;
        if !(*select).intoClause.is_null()
            || !PgList::<pg_sys::Node>::from_pg((*select).lockingClause).is_empty()
        {
            return Err(not_one_select("must only read (no INTO, no FOR UPDATE)"));
        }
        let with = (*select).withClause;
        if !with.is_null() {
            let ctes = PgList::<pg_sys::CommonTableExpr>::from_pg((*with).ctes);
            let writes = ctes
                .iter_ptr()
                .any(|cte| !pgrx::is_a((*cte).ctequery, pg_sys::NodeTag::T_SelectStmt));
            if writes {
                return Err(not_one_select(
                    "must only read (its WITH holds a statement that writes)",
                ));
            }
        }
    }
    Ok(())
}

/// The query made to read its rows: `SELECT <select> FROM (<query>) q`, checked to be one
/// SELECT before and after wrapping (the query's text cannot close the parenthesis and go
/// on). Newlines keep a trailing `--` comment inside.
fn wrapped(for_each: &ForEach, select: &str) -> Result<String> {
    check_one_select(&for_each.query)?;
    let sql = format!("SELECT {select} FROM (\n{}\n) q", for_each.query);
    check_one_select(&sql)?;
    Ok(sql)
}

/// Puts the transaction's read-only flag back as it was, also when the query's error
/// unwinds through it.
struct ReadOnly {
    before: bool,
}

impl ReadOnly {
    /// The transaction read-only from here: the query cannot write, even through a
    /// function it calls. The flag the writes check is set as `SET TRANSACTION READ ONLY`
    /// sets it, not through `transaction_read_only`, which PostgreSQL 18 refuses to change
    /// inside a function.
    fn begin() -> ReadOnly {
        // SAFETY: the main thread (SPI runs here); a plain flag of the current transaction.
        let before = unsafe { pg_sys::XactReadOnly };
        unsafe { pg_sys::XactReadOnly = true };
        ReadOnly { before }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        // SAFETY: as in begin.
        unsafe { pg_sys::XactReadOnly = self.before };
    }
}

/// `work` as `owner`, read-only. A write the query tried reads as the owner's refusal.
fn as_owner_reading<T>(owner: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    store::as_role(owner, || {
        let _read_only = ReadOnly::begin();
        work()
    })
    .map_err(|e| match e {
        PullsyncError::Postgres { sqlstate, message, .. }
            if sqlstate == SqlState::READ_ONLY_SQL_TRANSACTION =>
        {
            PullsyncError::Forbidden {
                message: format!("config.for_each.query must only read: {message}"),
                hint: "The parent query runs read-only, as the source's owner: list the parents with a SELECT that writes nothing.".into(),
            }
        }
        other => other,
    })
}

/// A configuration's parent query, when it has one (`check_parent_query`): the check
/// `store::save` runs for a fan-out source.
pub fn check(owner: &str, config: &RestConfig) -> Result<()> {
    match &config.for_each {
        Some(for_each) => check_parent_query(owner, for_each),
        None => Ok(()),
    }
}

/// `rest_add_source`/`rest_alter_source`: the parent query is one SELECT, runs once as
/// `owner` (42501 when the owner may not read what it reads, or it writes), and has a
/// column for each placeholder.
pub fn check_parent_query(owner: &str, for_each: &ForEach) -> Result<()> {
    let sql = wrapped(for_each, "q.*")?;
    let columns = as_owner_reading(owner, || {
        Spi::connect(|client| {
            // Run whole, not LIMIT 0: a function of its target list that writes is met now.
            let table = client.select(&sql, None, &[])?;
            let mut names = Vec::new();
            for i in 1..=table.columns()? {
                names.push(table.column_name(i)?);
            }
            Ok::<_, PullsyncError>(names)
        })
    })?;
    for (name, column) in &for_each.bind {
        if !columns.contains(column) {
            return Err(PullsyncError::invalid(
                format!("config.for_each.as.{name}: the parent query has no column {column:?}"),
                format!(
                    "Name a column of the query's result: {}.",
                    columns.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The parents the query lists now, each once, as `owner`; and how many of its rows were
/// left out (a placeholder's column null, an object or an array).
pub fn list(owner: &str, for_each: &ForEach) -> Result<(Vec<Parent>, usize)> {
    let sql = wrapped(for_each, "pg_catalog.to_jsonb(q)")?;
    let rows = as_owner_reading(owner, || {
        Spi::connect(|client| {
            let mut rows = Vec::new();
            for row in client.select(&sql, None, &[])? {
                rows.push(row.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null));
            }
            Ok::<_, PullsyncError>(rows)
        })
    })?;
    let mut seen = std::collections::HashSet::new();
    let (mut parents, mut left_out) = (Vec::new(), 0);
    for row in &rows {
        match Parent::from_row(&for_each.bind, row) {
            Some(parent) => {
                if seen.insert(parent.key().to_string()) {
                    parents.push(parent);
                }
            }
            None => left_out += 1,
        }
    }
    Ok((parents, left_out))
}

/// Where a parent's listing stands.
#[derive(Default)]
pub struct State {
    /// The mark its next fresh run sends.
    pub high_water: Option<String>,
    /// Its unfinished run, resumed after its last committed page.
    pub run: Option<Run>,
}

/// The state of each parent of source `name` that has one, by its key's JSON text.
pub fn states(name: &str) -> Result<HashMap<String, State>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT parent_key, high_water, run_position, run_since, run_high_water
               FROM pullsync.rest_parent_state WHERE source_name = $1",
            None,
            &[name.into()],
        )?;
        let mut out = HashMap::new();
        for r in rows {
            let key = r.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null);
            let run = match r.get::<JsonB>(3)? {
                Some(p) => Some(Run {
                    position: serde_json::from_value(p.0).map_err(|e| {
                        PullsyncError::Internal(format!(
                            "a parent of REST source {name} has an unreadable position: {e}"
                        ))
                    })?,
                    since: r.get::<String>(4)?,
                    high_water: r.get::<String>(5)?,
                }),
                None => None,
            };
            let high_water = r.get::<String>(2)?;
            out.insert(key.to_string(), State { high_water, run });
        }
        Ok(out)
    })
}

/// Writes a page of a parent's children as the owner and where that parent's listing goes
/// next (None: it is done, and its highest value becomes its mark), in the caller's unit of
/// work: each parent commits on its own.
pub fn write_page(
    source: &Stored,
    table: &str,
    key: &Value,
    rows: &Rows,
    next: Option<&Position>,
    since: Option<&str>,
    run_high_water: Option<&str>,
) -> Result<Written> {
    let written = store::upsert_or_quarantine(source, table, rows)?;
    let key = JsonB(key.clone());
    match next {
        Some(next) => Spi::run_with_args(
            "INSERT INTO pullsync.rest_parent_state AS s
                    (source_name, parent_key, run_position, run_since, run_high_water)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source_name, parent_key) DO UPDATE
                SET run_position = EXCLUDED.run_position, run_since = EXCLUDED.run_since,
                    run_high_water = EXCLUDED.run_high_water, updated_at = now()",
            &[
                source.name.as_str().into(),
                key.into(),
                JsonB(serde_json::to_value(next).unwrap_or_default()).into(),
                since.into(),
                run_high_water.into(),
            ],
        )?,
        None => Spi::run_with_args(
            "INSERT INTO pullsync.rest_parent_state AS s (source_name, parent_key, high_water)
             VALUES ($1, $2, $3)
             ON CONFLICT (source_name, parent_key) DO UPDATE
                SET high_water = coalesce(EXCLUDED.high_water, s.high_water), run_position = NULL,
                    run_since = NULL, run_high_water = NULL, updated_at = now()",
            &[
                source.name.as_str().into(),
                key.into(),
                run_high_water.into(),
            ],
        )?,
    }
    Ok(written)
}
