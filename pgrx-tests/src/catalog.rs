//! What a database's pg_pullsync is made of, as comparable text: its rows (a digest per
//! table) and its catalog (every object of the extension with its definition). The
//! upgrade test compares an upgraded database with a fresh install; the backup test a
//! restored database with the dumped one.

use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};

/// One line per object of the extension: members, columns (in order, with type, nullness,
/// default and identity), constraints, indexes, triggers, policies, views, functions with
/// their signatures and properties, sequences, row security, grants, comments and the
/// config-dump registrations.
///
/// Two things are compared by meaning rather than by spelling, because PostgreSQL, not
/// pg_pullsync, chooses them and pg_upgrade from 15 to 18 chooses otherwise than a fresh
/// install: a grant list is the set of its grants, and when equal to the default
/// (`acldefault`) the default, which pg_dump leaves out, in another order; and a NOT NULL constraint (named by PostgreSQL 18, never by
/// pg_pullsync) is its table and column, without the name.
const DESCRIBE: &str = r#"
WITH ext AS (
    SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'pg_pullsync'
), rel AS (
    SELECT c.* FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'pullsync'
), fn AS (
    SELECT p.* FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'pullsync'
)
SELECT 'member ' || pg_describe_object(d.classid, d.objid, 0)
  FROM pg_depend d, ext
 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
UNION ALL
SELECT format('relation %s kind=%s persistence=%s rls=%s force_rls=%s options=%s acl=%s comment=%s',
              relname, relkind, relpersistence, relrowsecurity, relforcerowsecurity, reloptions,
              (SELECT array_agg(i::text ORDER BY i::text) FROM unnest(coalesce(relacl, acldefault((CASE relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", relowner))) i),
              obj_description(oid, 'pg_class'))
  FROM rel
UNION ALL
SELECT format('column %s.%s #%s %s notnull=%s default=%s identity=%s generated=%s collation=%s acl=%s',
              r.relname, a.attname,
              row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum),
              format_type(a.atttypid, a.atttypmod), a.attnotnull,
              pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
              a.attcollation::regcollation, a.attacl)
  FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE r.relkind IN ('r', 'v', 'm', 'p', 'f')
UNION ALL
SELECT format('constraint %s.%s %s', r.relname,
              CASE co.contype WHEN 'n' THEN '(not null)' ELSE co.conname END,
              pg_get_constraintdef(co.oid))
  FROM pg_constraint co JOIN rel r ON r.oid = co.conrelid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN rel r ON r.oid = i.indrelid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid
 WHERE NOT t.tgisinternal
UNION ALL
SELECT format('trigger-state %s.%s enabled=%s', r.relname, t.tgname, t.tgenabled)
  FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid
 WHERE NOT t.tgisinternal
UNION ALL
SELECT format('policy %s.%s permissive=%s roles=%s cmd=%s using=%s check=%s',
              tablename, policyname, permissive, roles, cmd, qual, with_check)
  FROM pg_policies WHERE schemaname = 'pullsync'
UNION ALL
SELECT format('view %s %s', relname, pg_get_viewdef(oid))
  FROM rel WHERE relkind IN ('v', 'm')
UNION ALL
SELECT format('sequence %s type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s',
              r.relname, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
              s.seqcache, s.seqcycle)
  FROM pg_sequence s JOIN rel r ON r.oid = s.seqrelid
UNION ALL
SELECT format('function %s(%s) returns %s language=%s volatile=%s strict=%s secdef=%s parallel=%s leakproof=%s cost=%s rows=%s config=%s acl=%s src=%s bin=%s comment=%s',
              p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
              l.lanname, p.provolatile, p.proisstrict, p.prosecdef, p.proparallel, p.proleakproof,
              p.procost, p.prorows, p.proconfig, (SELECT array_agg(i::text ORDER BY i::text) FROM unnest(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) i),
              md5(p.prosrc), p.probin,
              obj_description(p.oid, 'pg_proc'))
  FROM fn p JOIN pg_language l ON l.oid = p.prolang
UNION ALL
SELECT format('function-defaults %s(%s) %s', p.proname, pg_get_function_identity_arguments(p.oid),
              pg_get_function_arguments(p.oid))
  FROM fn p
UNION ALL
SELECT format('type %s %s', t.typname, t.typtype)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'pullsync' AND t.typrelid = 0 AND t.typelem = 0
UNION ALL
SELECT format('schema pullsync owner-is-bootstrap=%s acl=%s', nspowner = 10,
              (SELECT array_agg(i::text ORDER BY i::text) FROM unnest(coalesce(nspacl, acldefault('n'::"char", nspowner))) i))
  FROM pg_namespace WHERE nspname = 'pullsync'
UNION ALL
SELECT format('config-dump %s filter=%s', c.cfg::regclass, coalesce(ext.extcondition[c.n], ''))
  FROM ext, unnest(ext.extconfig) WITH ORDINALITY AS c(cfg, n)
"#;

/// The extension's catalog in the connected database, one line per object.
pub fn describe(db: &mut Client) -> BTreeSet<String> {
    db.query(DESCRIBE, &[])
        .expect("describe the pg_pullsync catalog")
        .iter()
        .map(|row| row.get::<_, Option<String>>(0).unwrap_or_default())
        .collect()
}

/// Lines only in `a` and lines only in `b`.
pub fn differences(a: &BTreeSet<String>, b: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (
        a.difference(b).cloned().collect(),
        b.difference(a).cloned().collect(),
    )
}

/// The tables of schema pullsync.
pub fn tables(db: &mut Client) -> Vec<String> {
    db.query(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'pullsync' AND c.relkind IN ('r', 'p') ORDER BY 1",
        &[],
    )
    .expect("list the pullsync tables")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Per table of schema pullsync: (row count, digest of every row), leaving out the
/// columns named in `except`.
pub fn table_digests(db: &mut Client, except: &[&str]) -> BTreeMap<String, (i64, String)> {
    let mut digests = BTreeMap::new();
    for table in tables(db) {
        let columns: Vec<String> = db
            .query(
                "SELECT quote_ident(attname) FROM pg_attribute
                  WHERE attrelid = ('pullsync.' || quote_ident($1))::regclass
                    AND attnum > 0 AND NOT attisdropped
                    AND NOT (attname::text = ANY($2::text[]) OR $1 || '.' || attname = ANY($2::text[]))
                  ORDER BY attnum",
                &[&table, &except],
            )
            .expect("list columns")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let row = format!("ROW({})::text", columns.join(", "));
        let digest = db
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), ''))
                       FROM (SELECT {row} AS r FROM pullsync.{table}) t"
                ),
                &[],
            )
            .expect("digest a table");
        digests.insert(table, (digest.get(0), digest.get(1)));
    }
    digests
}

/// The last value of every sequence of schema pullsync.
pub fn sequence_values(db: &mut Client) -> BTreeMap<String, Option<i64>> {
    db.query(
        "SELECT sequencename::text, last_value FROM pg_sequences WHERE schemaname = 'pullsync'",
        &[],
    )
    .expect("read the sequences")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}
