//! The sources this library was built with, installed once by `_PG_init`.

use super::source::Source;
use std::sync::OnceLock;

pub type Sources = &'static [&'static dyn Source];

static SOURCES: OnceLock<Sources> = OnceLock::new();

pub fn install(sources: Sources) {
    // _PG_init runs once per process; a second call would install the same list.
    let _ = SOURCES.set(sources);
}

pub fn all() -> Sources {
    SOURCES.get().copied().unwrap_or_default()
}

/// The source whose jobs are of `kind`.
pub fn by_kind(kind: &str) -> Option<&'static dyn Source> {
    all().iter().copied().find(|s| s.kind() == kind)
}

/// Whether `name` is a registered source's name.
pub fn is_source(name: &str) -> bool {
    all().iter().any(|s| s.name() == name)
}
