//! The Citus calls of docs/SCALING.md: its ```sql block, and the statements of it that a
//! plain PostgreSQL runs too (the ones that make the schema acceptable to Citus).

/// The lines of the ```sql block of docs/SCALING.md, trimmed.
pub fn scaling_calls() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCALING.md"))
        .expect("read docs/SCALING.md");
    doc.split("```sql\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sql block in docs/SCALING.md")
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

/// The statements of the block that are not Citus functions: settings, dropped triggers
/// and rewritten policies. A `citus.*` setting is a mere placeholder without Citus.
pub fn preparation() -> Vec<String> {
    scaling_calls()
        .into_iter()
        .filter(|l| {
            l.starts_with("SET ")
                || l.starts_with("DROP TRIGGER ")
                || l.starts_with("ALTER POLICY ")
        })
        .collect()
}
