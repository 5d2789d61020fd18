//! The schema is ready for Citus: the distribution calls in docs/SCALING.md, checked over
//! a fresh install's catalog against the rules Citus imposes (Citus itself cannot be
//! installed here).

use postgres::Client;
use pullsync_tests::citus;
use pullsync_tests::db::fresh_extension_database;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq)]
enum Placement {
    /// Distributed by `column`, in the co-location group named by its first table.
    Distributed {
        column: String,
        group: String,
    },
    Reference,
    Coordinator,
}

struct Plan {
    tables: BTreeMap<String, Placement>,
    /// The line of the block that places each table.
    placed_at: BTreeMap<String, usize>,
    /// (table, trigger) → the line that drops it.
    dropped_triggers: BTreeMap<(String, String), usize>,
    /// (table, policy) → the line that rewrites it.
    altered_policies: BTreeMap<(String, String), usize>,
    /// The line that sets `citus.enable_unsafe_triggers = on`, if one does.
    unsafe_triggers_at: Option<usize>,
}

/// The quoted strings of a line, in order.
fn quoted(line: &str) -> Vec<String> {
    line.split('\'')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim_start_matches("pullsync.").to_string())
        .collect()
}

/// `<name> ON pullsync.<table>…` → (table, name).
fn named_on_table(rest: &str, line: &str) -> (String, String) {
    let (name, rest) = rest
        .split_once(" ON pullsync.")
        .unwrap_or_else(|| panic!("{line}: <name> ON pullsync.<table>"));
    let table = rest.split([' ', ';']).next().expect("a table name");
    (table.to_string(), name.to_string())
}

/// The calls of the ```sql block of docs/SCALING.md.
fn plan() -> Plan {
    let mut plan = Plan {
        tables: BTreeMap::new(),
        placed_at: BTreeMap::new(),
        dropped_triggers: BTreeMap::new(),
        altered_policies: BTreeMap::new(),
        unsafe_triggers_at: None,
    };
    for (at, line) in citus::scaling_calls().iter().enumerate() {
        let args = quoted(line);
        let placement = if line.starts_with("SELECT create_distributed_table(") {
            let group = if line.contains("colocate_with") {
                let of = plan.tables.get(&args[2]).cloned();
                match of {
                    Some(Placement::Distributed { group, .. }) => group,
                    other => panic!("{line}: co-located with {other:?}"),
                }
            } else {
                args[0].clone()
            };
            Placement::Distributed {
                column: args[1].clone(),
                group,
            }
        } else if line.starts_with("SELECT create_reference_table(") {
            Placement::Reference
        } else if line.starts_with("SELECT citus_add_local_table_to_metadata(") {
            Placement::Coordinator
        } else if let Some(rest) = line.strip_prefix("DROP TRIGGER ") {
            plan.dropped_triggers.insert(named_on_table(rest, line), at);
            continue;
        } else if let Some(rest) = line.strip_prefix("ALTER POLICY ") {
            plan.altered_policies.insert(named_on_table(rest, line), at);
            continue;
        } else if line == "SET citus.enable_unsafe_triggers = on;" {
            plan.unsafe_triggers_at = Some(at);
            continue;
        } else {
            assert!(
                line.is_empty() || line.starts_with("--"),
                "a line of the sql block this test does not read: {line}"
            );
            continue;
        };
        let previous = plan.tables.insert(args[0].clone(), placement);
        assert!(previous.is_none(), "{} placed twice", args[0]);
        plan.placed_at.insert(args[0].clone(), at);
    }
    plan
}

fn strings(db: &mut Client, sql: &str) -> Vec<Vec<String>> {
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| (0..r.len()).map(|i| r.get::<_, String>(i)).collect())
        .collect()
}

#[test]
fn the_schema_follows_the_citus_rules_of_docs_scaling() {
    let plan = plan();
    let mut db = fresh_extension_database("it_citus_ready");

    // Every table is placed exactly once, and only tables are.
    let tables: BTreeSet<String> = strings(
        &mut db,
        "SELECT relname::text FROM pg_class WHERE relnamespace = 'pullsync'::regnamespace AND relkind IN ('r', 'p')",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let placed: BTreeSet<String> = plan.tables.keys().cloned().collect();
    assert_eq!(placed, tables, "docs/SCALING.md places exactly the tables");

    // The Threads tables by account, the feed tables by conversation.
    let distributed = |table: &str| match &plan.tables[table] {
        Placement::Distributed { column, group } => Some((column.clone(), group.clone())),
        _ => None,
    };
    for table in tables
        .iter()
        .filter(|t| t.starts_with("workspace_threads_"))
    {
        let expected = if table == "workspace_threads_accounts" {
            "id"
        } else {
            "workspace_threads_account_id"
        };
        assert_eq!(
            distributed(table),
            Some((expected.into(), "workspace_threads_accounts".into())),
            "{table}"
        );
    }
    assert_eq!(
        distributed("conversations"),
        Some(("id".into(), "conversations".into()))
    );
    assert_eq!(
        distributed("conversation_messages"),
        Some(("conversation_id".into(), "conversations".into()))
    );

    // One column type per co-location group, and the column is NOT NULL (Citus refuses
    // NULL in a distribution column).
    let mut group_types: BTreeMap<String, String> = BTreeMap::new();
    for table in &tables {
        let Some((column, group)) = distributed(table) else {
            continue;
        };
        let row = strings(
            &mut db,
            &format!(
                "SELECT format_type(atttypid, atttypmod), attnotnull::text FROM pg_attribute
                  WHERE attrelid = 'pullsync.{table}'::regclass AND attname = '{column}'"
            ),
        );
        assert_eq!(row.len(), 1, "{table}.{column} exists");
        assert_eq!(row[0][1], "true", "{table}.{column} is NOT NULL");
        let kind = group_types
            .entry(group.clone())
            .or_insert_with(|| row[0][0].clone());
        assert_eq!(
            *kind, row[0][0],
            "{table}.{column}: one type in group {group}"
        );
    }

    // Every unique index (primary keys and unique constraints have one) of a distributed
    // table holds the distribution column.
    let mut unique_checked = 0;
    for index in strings(
        &mut db,
        "SELECT c.relname::text, i.indexrelid::regclass::text,
                array_to_string(ARRAY(SELECT a.attname::text FROM unnest(i.indkey) k
                                        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k), ',')
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          WHERE c.relnamespace = 'pullsync'::regnamespace AND i.indisunique",
    ) {
        if let Some((column, _)) = distributed(&index[0]) {
            assert!(
                index[2].split(',').any(|c| c == column),
                "{}: unique index {} ({}) lacks the distribution column {column}",
                index[0],
                index[1],
                index[2]
            );
            unique_checked += 1;
        }
    }
    assert!(unique_checked >= 12, "{unique_checked} unique indexes");

    // Foreign keys: inside a co-location group on the distribution column, or towards a
    // reference table; never into a distributed table from outside, nor into the
    // coordinator's tables from a distributed or reference table.
    let mut keys_checked = 0;
    for fk in strings(
        &mut db,
        "SELECT c.conname::text, f.relname::text, r.relname::text,
                array_to_string(ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                                       ORDER BY k.o), ','),
                array_to_string(ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                                       ORDER BY k.o), ',')
           FROM pg_constraint c
           JOIN pg_class f ON f.oid = c.conrelid
           JOIN pg_class r ON r.oid = c.confrelid
          WHERE c.contype = 'f' AND f.relnamespace = 'pullsync'::regnamespace",
    ) {
        let (name, from, to) = (&fk[0], &fk[1], &fk[2]);
        let (from_cols, to_cols): (Vec<&str>, Vec<&str>) =
            (fk[3].split(',').collect(), fk[4].split(',').collect());
        match (&plan.tables[from], &plan.tables[to]) {
            (
                Placement::Distributed {
                    column: from_col,
                    group: from_group,
                },
                Placement::Distributed {
                    column: to_col,
                    group: to_group,
                },
            ) => {
                assert_eq!(from_group, to_group, "{from}.{name}: across co-location groups");
                let at = from_cols.iter().position(|c| c == from_col);
                assert!(
                    at.is_some() && to_cols[at.unwrap()] == to_col,
                    "{from}.{name} ({}) → {to} ({}): does not map {from_col} to {to_col}",
                    fk[3],
                    fk[4]
                );
            }
            (_, Placement::Reference) => {}
            (from_place, Placement::Distributed { .. }) => {
                panic!("{from}.{name}: a {from_place:?} table references distributed {to}")
            }
            (Placement::Coordinator, Placement::Coordinator) => {}
            (from_place, Placement::Coordinator) => {
                panic!("{from}.{name}: a {from_place:?} table references coordinator table {to}")
            }
        }
        keys_checked += 1;
    }
    assert!(keys_checked >= 10, "{keys_checked} foreign keys");

    // What the block changes before placing a table comes before that table's call: Citus
    // checks triggers and policies when it places a table.
    for ((table, name), at) in plan.dropped_triggers.iter().chain(&plan.altered_policies) {
        assert!(
            at < &plan.placed_at[table],
            "{name} on {table} is changed after {table} is placed"
        );
    }
    for statement in citus::preparation() {
        db.batch_execute(&statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    // A trigger on a distributed table runs on the node of its shard: one whose function
    // writes other tables cannot stay. Citus places a distributed or reference table with
    // triggers only under citus.enable_unsafe_triggers.
    for trigger in strings(
        &mut db,
        "SELECT c.relname::text, t.tgname::text, p.prosrc
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
          WHERE c.relnamespace = 'pullsync'::regnamespace AND NOT t.tgisinternal",
    ) {
        let (table, name, source) = (&trigger[0], &trigger[1], &trigger[2]);
        let writes_elsewhere = ["INSERT INTO", "UPDATE ", "DELETE FROM"]
            .iter()
            .any(|verb| source.contains(verb));
        assert!(
            !(distributed(table).is_some() && writes_elsewhere),
            "trigger {name} on distributed {table} writes other tables: docs/SCALING.md must drop it"
        );
        if plan.tables[table] != Placement::Coordinator {
            assert!(
                plan.unsafe_triggers_at
                    .is_some_and(|at| at < plan.placed_at[table]),
                "{table} keeps trigger {name}: set citus.enable_unsafe_triggers before placing it"
            );
        }
    }
    assert!(plan
        .dropped_triggers
        .contains_key(&("workspace_threads_accounts".into(), "forget_account".into())));

    // Citus refuses a policy with a subquery on any table it places; row security stays on.
    let policies = strings(
        &mut db,
        "SELECT c.relname::text, p.polname::text,
                (p.polqual::text LIKE '%{SUBLINK%' OR coalesce(p.polwithcheck::text, '') LIKE '%{SUBLINK%')::text,
                c.relrowsecurity::text
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
          WHERE c.relnamespace = 'pullsync'::regnamespace",
    );
    assert!(policies.len() >= 8, "{} policies", policies.len());
    for policy in policies {
        let (table, name) = (&policy[0], &policy[1]);
        assert_eq!(
            policy[2], "false",
            "policy {name} on {table} holds a subquery"
        );
        assert_eq!(policy[3], "true", "row security on {table}");
    }
}
