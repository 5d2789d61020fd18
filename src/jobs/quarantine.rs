//! Items a source's target would not take, kept with the reason in the source's quarantine
//! table so the rest of their page is written and the run goes on, and applied again later.
//! One mechanism for every source; each names its table and columns (`Table`).

use crate::error::{PullsyncError, Result};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// A source's quarantine table: `id`, the source's name, the item as it came (jsonb),
/// `reason`, `retried_at`, `resolved_at`, and text columns saying where the item belongs.
pub struct Table {
    /// Schema-qualified.
    pub name: &'static str,
    /// The column that names the source.
    pub source: &'static str,
    /// The jsonb column that holds the item.
    pub item: &'static str,
    /// Further text columns written with the item and read back when it is retried.
    pub context: &'static [&'static str],
}

/// What became of a page's items.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub stored: usize,
    pub quarantined: usize,
}

/// An attempt to store items, made in a subtransaction of its own: `Ok(Err(e))` is the
/// items' fault (they go to quarantine with `e` as the reason), `Err` stops the write.
pub type Attempt = Result<std::result::Result<(), PullsyncError>>;

/// A quarantined item to apply again.
pub struct Held {
    pub id: i64,
    pub item: Value,
    /// The values of `Table::context`, in its order.
    pub context: Vec<Option<String>>,
}

/// Stores a batch of `count` items with `all`; when that is refused for a reason in the
/// data, its `items` one by one with `one`, and `keep` puts each that still fails in
/// quarantine with the reason. So one bad item costs only itself.
pub fn store_or_quarantine<T>(
    count: usize,
    all: impl FnOnce() -> Attempt,
    items: impl IntoIterator<Item = T>,
    mut one: impl FnMut(&T) -> Attempt,
    mut keep: impl FnMut(&T, &str) -> Result<()>,
) -> Result<Written> {
    if all()?.is_ok() {
        return Ok(Written {
            stored: count,
            quarantined: 0,
        });
    }
    let mut written = Written::default();
    for item in items {
        match one(&item)? {
            Ok(()) => written.stored += 1,
            Err(e) => {
                keep(&item, &e.to_string())?;
                written.quarantined += 1;
            }
        }
    }
    Ok(written)
}

impl Table {
    /// Keeps `item` of `source` with `reason`; `context` in the order of `Table::context`.
    pub fn put(
        &self,
        source: &str,
        item: Value,
        reason: &str,
        context: &[Option<&str>],
    ) -> Result<()> {
        let columns: Vec<&str> = [self.source, "reason", self.item]
            .into_iter()
            .chain(self.context.iter().copied())
            .collect();
        let values: Vec<String> = (1..=columns.len()).map(|n| format!("${n}")).collect();
        let mut args = vec![source.into(), reason.into(), JsonB(item).into()];
        args.extend(context.iter().map(|&c| c.into()));
        Spi::run_with_args(
            &format!(
                "INSERT INTO {} ({}) VALUES ({})",
                self.name,
                columns.join(", "),
                values.join(", ")
            ),
            &args,
        )?;
        Ok(())
    }

    /// `source`'s items not yet resolved, oldest first.
    fn open(&self, source: &str) -> Result<Vec<Held>> {
        let sql = format!(
            "SELECT id, {} FROM {} WHERE {} = $1 AND resolved_at IS NULL ORDER BY id",
            [self.item]
                .iter()
                .chain(self.context)
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            self.name,
            self.source
        );
        Spi::connect(|client| {
            let rows = client.select(&sql, None, &[source.into()])?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut context = Vec::with_capacity(self.context.len());
                for n in 0..self.context.len() {
                    context.push(row.get::<String>(3 + n)?);
                }
                out.push(Held {
                    id: row.get(1)?.unwrap_or_default(),
                    item: row.get::<JsonB>(2)?.map(|j| j.0).unwrap_or(Value::Null),
                    context,
                });
            }
            Ok::<_, PullsyncError>(out)
        })
    }

    /// Applies `source`'s quarantined items again with `apply`, oldest first: those it now
    /// stores are resolved, the others keep their (new) reason. Returns
    /// `{<named.0>: <named.1>, retried, stored, still_quarantined}`.
    pub fn retry(
        &self,
        source: &str,
        named: (&str, &str),
        mut apply: impl FnMut(&Held) -> Attempt,
    ) -> Result<Value> {
        let open = self.open(source)?;
        let mut stored: Vec<i64> = Vec::new();
        let (mut still, mut reasons): (Vec<i64>, Vec<String>) = (Vec::new(), Vec::new());
        for held in &open {
            match apply(held)? {
                Ok(()) => stored.push(held.id),
                Err(e) => {
                    still.push(held.id);
                    reasons.push(e.to_string());
                }
            }
        }
        Spi::run_with_args(
            &format!(
                "UPDATE {} SET resolved_at = now(), retried_at = now() WHERE id = ANY($1)",
                self.name
            ),
            &[stored.clone().into()],
        )?;
        Spi::run_with_args(
            &format!(
                "UPDATE {} q SET reason = r.reason, retried_at = now()
                   FROM unnest($1::bigint[], $2::text[]) AS r(id, reason) WHERE q.id = r.id",
                self.name
            ),
            &[still.clone().into(), reasons.into()],
        )?;
        crate::monitor::record::check_alerts()?;
        Ok(json!({
            (named.0): named.1,
            "retried": open.len(),
            "stored": stored.len(),
            "still_quarantined": still.len(),
        }))
    }
}
