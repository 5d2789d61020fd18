//! The peer: the same Threads workload pulled by a dlt pipeline (xtask/peer/dlt_threads.py)
//! in a virtualenv under target/bench, loading into the bench cluster; as first written, as
//! tuned by dlt's performance guide, and as dlt's declarative `rest_api` source.

use super::{Bench, BENCH_PORT, DB, SIM_PORT};
use crate::process::{cmd, Result, StatusOk};
use crate::simulator::http;
use crate::workspace::workspace_root;
use std::path::{Path, PathBuf};

/// The pinned dlt release the figures were measured with.
const DLT: &str = "dlt[postgres]==1.31.0";

pub fn venv(home: &Path) -> PathBuf {
    home.join("venv")
}

/// Creates the virtualenv and installs dlt into it, unless it is there already.
pub fn prepare(home: &Path) -> Result<()> {
    let python = venv(home).join("bin/python");
    let installed = cmd(python.to_str().expect("utf-8 path"))
        .args(["-c", "import dlt, psycopg2"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if installed {
        println!("xtask: dlt present in {}", venv(home).display());
        return Ok(());
    }
    println!("xtask: installing {DLT} into {}", venv(home).display());
    cmd("python3")
        .args(["-m", "venv"])
        .arg(venv(home))
        .status_ok()?;
    cmd(venv(home).join("bin/pip").to_str().expect("utf-8 path"))
        .args(["install", "-q", DLT])
        .status_ok()
}

/// The pipeline's DLT_VARIANT.
#[derive(Debug, Clone, Copy)]
pub enum Variant {
    /// Everything in dlt's main thread, one REST client per call.
    Default,
    /// Per-post insights deferred into dlt's thread pool, account insights parallelized,
    /// one client per account, 32 extract workers.
    Tuned,
    /// The same work declared as `rest_api` resources, one set per account, parallelized,
    /// with the tuned thread pool.
    RestApi,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Tuned => "tuned",
            Variant::RestApi => "rest_api",
        }
    }
}

/// One pipeline: its state starts empty, so its first run is a full load.
pub struct Pipeline<'a> {
    bench: &'a Bench,
    variant: Variant,
    accounts_file: PathBuf,
    state: PathBuf,
}

impl<'a> Pipeline<'a> {
    pub fn fresh(bench: &'a Bench, variant: Variant) -> Result<Pipeline<'a>> {
        let state = bench.home.join("dlt-pipelines");
        if state.exists() {
            std::fs::remove_dir_all(&state)?;
        }
        bench.cluster.psql_quiet(
            DB,
            "DROP SCHEMA IF EXISTS dlt_threads CASCADE; DROP SCHEMA IF EXISTS dlt_threads_staging CASCADE;",
        )?;
        let accounts_file = bench.home.join("dlt-accounts.json");
        std::fs::write(
            &accounts_file,
            http(SIM_PORT, "GET", "/admin/accounts", "")?,
        )?;
        Ok(Pipeline {
            bench,
            variant,
            accounts_file,
            state,
        })
    }

    pub fn run(&self) -> Result<()> {
        let python = venv(&self.bench.home).join("bin/python");
        cmd(python.to_str().expect("utf-8 path"))
            .arg(workspace_root().join("xtask/peer/dlt_threads.py"))
            .env("THREADS_API", format!("http://127.0.0.1:{SIM_PORT}/v1.0"))
            .env("ACCOUNTS_FILE", &self.accounts_file)
            // Trust authentication: the password is only there to satisfy dlt's parser.
            .env(
                "PG_DSN",
                format!("postgresql://postgres:bench@127.0.0.1:{BENCH_PORT}/{DB}"),
            )
            .env("PIPELINES_DIR", &self.state)
            .env("DLT_VARIANT", self.variant.name())
            .env("RUNTIME__LOG_LEVEL", "WARNING")
            .status_ok()
    }

    /// Rows in the pipeline's tables (merged: one per post, post and account-day).
    pub fn rows(&self) -> Result<u64> {
        let exists = self.bench.query(
            DB,
            "SELECT to_regclass('dlt_threads.post_insights') IS NOT NULL",
        )?;
        if exists != "t" {
            return Ok(0);
        }
        Ok(self
            .bench
            .query(
                DB,
                "SELECT (SELECT count(*) FROM dlt_threads.posts)
                      + (SELECT count(*) FROM dlt_threads.post_insights)
                      + (SELECT count(*) FROM dlt_threads.account_insights)",
            )?
            .parse()?)
    }
}
