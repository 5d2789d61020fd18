//! Whether the database's pg_pullsync schema is the one this library was built for. After
//! a new library is installed and the server restarted, the schema stays at the old
//! version until `ALTER EXTENSION pg_pullsync UPDATE`; until then background processes
//! wait instead of running this version's SQL against the old tables.

/// The extension version this library implements.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaState {
    /// No `CREATE EXTENSION pg_pullsync` in this database.
    NotInstalled,
    Current,
    /// Installed at another version (usually older: the update has not run yet).
    Other(String),
}

impl SchemaState {
    /// From `pg_extension.extversion` (None when the extension is not installed).
    pub fn of(installed: Option<&str>) -> SchemaState {
        match installed {
            None => SchemaState::NotInstalled,
            Some(v) if v == LIBRARY_VERSION => SchemaState::Current,
            Some(v) => SchemaState::Other(v.to_string()),
        }
    }

    /// The log line for a background process that waits in this state, if it waits.
    pub fn wait_message(&self, process: &str, database: &str) -> Option<String> {
        match self {
            SchemaState::Current => None,
            SchemaState::NotInstalled => Some(format!(
                "{process}: pg_pullsync is not installed in database \"{database}\"; waiting for CREATE EXTENSION pg_pullsync"
            )),
            SchemaState::Other(installed) => Some(format!(
                "{process}: the pg_pullsync library is {LIBRARY_VERSION} but database \"{database}\" has the extension at {installed}; \
                 waiting for ALTER EXTENSION pg_pullsync UPDATE (no job runs until then)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_the_installed_version_with_the_library() {
        assert_eq!(SchemaState::of(None), SchemaState::NotInstalled);
        assert_eq!(SchemaState::of(Some(LIBRARY_VERSION)), SchemaState::Current);
        assert_eq!(
            SchemaState::of(Some("0.1.0")),
            SchemaState::Other("0.1.0".into())
        );
        assert!(SchemaState::Current.wait_message("w", "db").is_none());
        let line = SchemaState::of(Some("0.1.0"))
            .wait_message("pg_pullsync worker 0", "app")
            .unwrap();
        assert!(
            line.contains("ALTER EXTENSION pg_pullsync UPDATE"),
            "{line}"
        );
        assert!(
            line.contains("0.1.0") && line.contains(LIBRARY_VERSION),
            "{line}"
        );
    }
}
