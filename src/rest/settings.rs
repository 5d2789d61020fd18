//! The REST source's settings (`pullsync.rest_*`), defined by its `SourceSpec`.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// kB. A REST page is parsed whole into a JSON tree, which costs 10× its bytes for
/// ordinary records and up to ~200× for a page of tiny objects (issue 36): far below the
/// feed's cap, and above the pages real APIs send (100 records of a few kB).
static REST_MAX_RESPONSE_KB: GucSetting<i32> = GucSetting::<i32>::new(4 * 1024);
static REST_RUN_BUDGET_SECS: GucSetting<i32> = GucSetting::<i32>::new(600);

pub fn define(_preloading: bool) {
    GucRegistry::define_int_guc(
        c"pullsync.rest_max_response_size",
        c"A REST source's answer larger than this is refused while it is read.",
        c"Bounds the memory of a REST pull: a page costs the backend up to ~15 times its size while it is written.",
        &REST_MAX_RESPONSE_KB,
        64,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"pullsync.rest_run_budget",
        c"A REST run stops, partial and resumable, once it has read pages for this long.",
        c"Bounds how long one source holds a worker: the page under way is finished and committed with its position first.",
        &REST_RUN_BUDGET_SECS,
        1,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
}

pub fn max_response_bytes() -> usize {
    REST_MAX_RESPONSE_KB.get().max(1) as usize * 1024
}

/// `pullsync.rest_run_budget`: how long a REST run may read pages.
pub fn run_budget() -> std::time::Duration {
    std::time::Duration::from_secs(REST_RUN_BUDGET_SECS.get().max(1) as u64)
}
