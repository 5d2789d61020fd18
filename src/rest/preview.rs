//! `rest_preview` and `rest_infer_table`: a configuration's listing sampled before any
//! source exists. The configuration is checked as `rest_add_source` checks it (its target,
//! when given and there, against the caller's rights); the pages are read in a background
//! process of their own, as `rest_pull` reads them (no transaction open across a request),
//! and nothing is written. The secret goes with the requests, never into the answer.

use super::api::{walk_answer, Api};
use super::caller::Caller;
use super::store::{self, Stored};
use crate::error::{PullsyncError, Result};
use crate::jobs::session::{self, Call};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use pgrx::prelude::*;
use pullsync_core::rest::config::{Auth, Method};
use pullsync_core::rest::infer::{self, Column, Proposal};
use pullsync_core::rest::paging::{self, Position};
use pullsync_core::rest::preview::{Mapping, PreviewConfig, Sample, MAX_PAGES};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What the background process is given: the configuration as the caller gave it (with
/// its secret: the segment it travels in is this server's memory) and the pages to read.
#[derive(Serialize, Deserialize)]
struct Arguments {
    config: Value,
    pages: u32,
}

/// `rest_preview`: the pages read and their records mapped, nothing written.
pub const PREVIEW: Call = Call {
    name: "rest_preview",
    run: preview_now,
};

/// What the session made of the configuration before any request.
struct Checked {
    preview: PreviewConfig,
    /// The target, quoted and qualified, once checked against the caller's rights.
    target: Option<String>,
    notes: Vec<String>,
}

/// The configuration checked as `rest_add_source` checks it. A target with its columns
/// whose table exists is checked against the caller's rights as well; one whose table
/// does not exist yet, or that gives no columns, is noted instead.
fn check(config: &Value, caller: &Caller) -> Result<Checked> {
    let preview = PreviewConfig::parse(config)?;
    let mut notes = Vec::new();
    let mut target = None;
    match &preview.table {
        None => notes.push(
            "config.target is not given: each row shows the record's top-level fields as columns"
                .to_string(),
        ),
        Some(table) => {
            let exists = Spi::get_one_with_args::<bool>(
                "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                &[table.as_str().into()],
            )?
            .unwrap_or(false);
            if !exists {
                notes.push(format!(
                    "config.target.table {table} does not exist yet: pullsync.rest_infer_table(config) proposes it"
                ));
            } else if preview.mapping == Mapping::Target {
                target = Some(store::check_target(&caller.name, &preview.config)?);
            }
            if preview.mapping == Mapping::TopLevel {
                notes.push(
                    "config.target.columns is not given: each row shows the record's top-level fields as columns"
                        .to_string(),
                );
            }
        }
    }
    Ok(Checked {
        preview,
        target,
        notes,
    })
}

/// Checks `config` and reads up to `pages` pages of its listing in a background process.
fn sample(config: &Value, pages: u32, caller: &Caller) -> Result<(Checked, Map<String, Value>)> {
    if !(1..=MAX_PAGES).contains(&pages) {
        return Err(PullsyncError::invalid(
            format!("pages must be from 1 to {MAX_PAGES}, not {pages}"),
            "A preview reads a few pages; rest_pull reads the whole listing.",
        ));
    }
    let checked = check(config, caller)?;
    let answer = session::run_with(
        &PREVIEW,
        &Arguments {
            config: config.clone(),
            pages,
        },
    )?;
    let Value::Object(answer) = answer else {
        return Err(PullsyncError::Internal(
            "the preview's answer is not an object".into(),
        ));
    };
    Ok((checked, answer))
}

/// `rest_preview(config, pages)`: the requests made, the rows as a pull would write them,
/// the columns' inferred types and where a pull would go on.
pub fn preview(config: &Value, pages: i32, caller: &Caller) -> Result<Value> {
    let (checked, mut answer) = sample(config, u32::try_from(pages).unwrap_or(0), caller)?;
    answer.insert("target".into(), json!(checked.target));
    answer.insert("notes".into(), json!(checked.notes));
    Ok(Value::Object(answer))
}

/// `rest_infer_table(config)`: the `CREATE TABLE` statement a sampled page suggests, and
/// the `target` that maps it.
pub fn infer_table(config: &Value, caller: &Caller) -> Result<String> {
    let (checked, answer) = sample(config, 1, caller)?;
    let preview = &checked.preview;
    if answer.get("rows_total").and_then(Value::as_u64) == Some(0) {
        let why = answer
            .get("error")
            .and_then(Value::as_str)
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(PullsyncError::invalid(
            format!("the sampled page gave no row to infer a table from{why}"),
            "Check config.records (where the page holds its records) and config.primary_key (records without a complete key are left out); rest_preview(config) shows what the page gave.",
        ));
    }
    let columns: Vec<Column> = serde_json::from_value(answer["columns"].clone())
        .map_err(|e| PullsyncError::Internal(format!("the preview's columns: {e}")))?;
    let extra = preview
        .extra
        .clone()
        .filter(|e| !columns.iter().any(|c| &c.column == e))
        .unwrap_or_else(|| infer::free_extra(&columns));
    let table = infer::table_name(
        preview.table.as_deref(),
        &infer::name_from_path(&preview.config.path),
    );
    Ok(Proposal {
        table: &table,
        columns: &columns,
        keys: &preview.key_columns(),
        extra: &extra,
    }
    .sql())
}

/// Every string of `value`, keys included, without the source's secret in any form.
fn redacted(api: &Api, value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(api.redacted(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redacted(api, v)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (api.redacted(&k), redacted(api, v)))
                .collect(),
        ),
        other => other,
    }
}

/// One request of the preview: what it asked, what came back, and where the listing goes
/// next (the inner error says, without the secret, why it stops there).
fn read_page(
    api: &Api,
    source: &Stored,
    position: &Position,
    since: Option<&str>,
    cancel: Cancel,
    sample: &mut Sample,
) -> Result<(Value, std::result::Result<Option<Position>, String>)> {
    let config = &source.config;
    let secret = source.secret.as_deref();
    let query_key = matches!(config.auth, Auth::QueryKey { .. })
        .then_some(secret)
        .flatten();
    let url = api.redacted(&paging::request_url(config, position, since, query_key));
    let method = match config.method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    let mut request = json!({ "method": method, "url": url });
    let fetched = api.page(position, since, cancel)?;
    request["status"] = json!(match &fetched {
        Ok(answer) => Some(answer.status),
        Err(failure) => failure.status(),
    });
    let mut records = 0;
    let next = walk_answer(api, config, position, fetched, |r, of| {
        records = of;
        sample.add(r)
    });
    request["records"] = json!(records);
    Ok((request, next))
}

/// The background process's work: the pages read one after another, as a pull reads
/// them, their records mapped, nothing written.
fn preview_now(arguments: &Value, _: Txn, cancel: Cancel) -> Result<Value> {
    let call: Arguments = session::arguments(arguments)?;
    let preview = PreviewConfig::parse(&call.config)?;
    let config = &preview.config;
    let source = Stored {
        name: "preview".into(),
        config: config.clone(),
        secret: preview.secret.clone(),
        owner: String::new(),
        high_water: None,
        run: None,
        backfill: None,
    };
    let api = Api::new(&source)?;
    let clean = |row: Value| redacted(&api, row);
    let mut sample = Sample::new(&preview, &clean);
    let since = config.incremental.as_ref().and_then(|i| i.initial.clone());
    let mut position = Position::Start;
    let mut next = Some(Position::Start);
    let mut requests = Vec::new();
    let mut error = None;
    for _ in 0..call.pages.min(config.max_pages) {
        let (request, read) = read_page(
            &api,
            &source,
            &position,
            since.as_deref(),
            cancel,
            &mut sample,
        )?;
        requests.push(request);
        match read {
            Ok(Some(after)) => {
                position = after.clone();
                next = Some(after);
            }
            Ok(None) => {
                next = None;
                break;
            }
            Err(message) => {
                error = Some(message);
                break;
            }
        }
    }
    // The requests' URLs and the error were cleaned as they were made, the rows too; a
    // next URL is the API's, and may echo the secret.
    let mut answer: Map<String, Value> = [
        ("requests", Value::Array(requests)),
        ("api_calls", json!(api.calls())),
        ("since", redacted(&api, json!(since))),
        ("next", redacted(&api, json!(next))),
        ("error", json!(error)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    answer.extend(sample.summary());
    Ok(Value::Object(answer))
}
