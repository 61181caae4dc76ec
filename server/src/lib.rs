//! The Plexus servers: `plexus-genesis` and `plexus-peer`.
//!
//! Each is a thin tokio + axum shell around a state machine of
//! [`plexus_core`]: the shell performs I/O and keeps time, the core decides.

pub mod genesis;
pub mod http;
pub mod load;
pub mod peer;
