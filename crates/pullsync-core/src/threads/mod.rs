//! The Threads source's pure parts: account checks, the API client, refresh planning,
//! snapshot and delta decisions, and the pull of one account.

pub mod accounts;
pub mod api;
pub mod layers;
pub mod lenient;
pub mod plan;
pub mod pull;
