//! Statements a process runs for every account or unit, parsed and planned once per
//! process instead of on every call. Postgres keeps each plan (SPI_keepplan) across
//! transactions and plans it again by itself when a table it reads is altered, dropped or
//! created anew, so a kept plan never outlives the schema it was made for.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys::{Oid, PgOid};
use pgrx::spi::{OwnedPreparedStatement, Spi, SpiClient, SpiResult, SpiTupleTable};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A statement's text, its argument types and whether it may write.
type Key = (&'static str, Vec<Oid>, bool);

thread_local! {
    static PLANS: RefCell<HashMap<Key, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// The kept plan of `sql` for the types of `args`, prepared on first use.
fn plan(
    client: &SpiClient<'_>,
    sql: &'static str,
    args: &[DatumWithOid],
    writes: bool,
) -> SpiResult<Rc<OwnedPreparedStatement>> {
    let key: Key = (sql, args.iter().map(DatumWithOid::oid).collect(), writes);
    if let Some(kept) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return Ok(kept);
    }
    let types: Vec<PgOid> = key.1.iter().map(|&oid| PgOid::from(oid)).collect();
    let prepared = if writes {
        client.prepare_mut(sql, &types)?
    } else {
        client.prepare(sql, &types)?
    };
    let kept = Rc::new(prepared.keep());
    PLANS.with(|plans| plans.borrow_mut().insert(key, kept.clone()));
    Ok(kept)
}

/// `client.select` through the kept plan.
pub fn select<'conn>(
    client: &SpiClient<'conn>,
    sql: &'static str,
    limit: Option<i64>,
    args: &[DatumWithOid],
) -> SpiResult<SpiTupleTable<'conn>> {
    let kept = plan(client, sql, args, false)?;
    client.select(&*kept, limit, args)
}

/// `client.update` through the kept plan.
pub fn update<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &'static str,
    limit: Option<i64>,
    args: &[DatumWithOid],
) -> SpiResult<SpiTupleTable<'conn>> {
    let kept = plan(client, sql, args, true)?;
    client.update(&*kept, limit, args)
}

/// `Spi::get_one_with_args` through the kept plan.
/// One value of a read-only statement, which (unlike `get_one`) assigns the transaction
/// no id: a call that only reads before it waits holds none while it waits.
pub fn read_one<T: FromDatum + IntoDatum>(
    sql: &'static str,
    args: &[DatumWithOid],
) -> SpiResult<Option<T>> {
    Spi::connect(|client| select(client, sql, Some(1), args)?.first().get_one())
}

pub fn get_one<T: FromDatum + IntoDatum>(
    sql: &'static str,
    args: &[DatumWithOid],
) -> SpiResult<Option<T>> {
    Spi::connect_mut(|client| update(client, sql, Some(1), args)?.first().get_one())
}

/// `Spi::run_with_args` through the kept plan.
pub fn run(sql: &'static str, args: &[DatumWithOid]) -> SpiResult<()> {
    Spi::connect_mut(|client| update(client, sql, None, args).map(|_| ()))
}
