//! Test tooling for pg_pullsync: helpers that drive a real cluster over a connection, and
//! (in later modules) the simulators the integration tests start.

pub mod auto_failover;
pub mod catalog;
pub mod citus;
pub mod datasette;
pub mod db;
pub mod failover;
pub mod fault_proxy;
pub mod feed;
pub mod fill;
pub mod local_server;
pub mod oauth_api;
pub mod paged_api;
pub mod parallel_api;
pub mod pg_upgrade;
pub mod ports;
pub mod rest_api;
pub mod rest_calls;
pub mod rest_fanout_api;
pub mod rest_incremental_api;
pub mod rest_listings_api;
pub mod rest_responses_api;
pub mod scratch_cluster;
pub mod server;
pub mod sim;
pub mod soak;
pub mod threads;
pub mod wait;
pub mod workers;
