//! The sans-IO protocol core of Plexus.
//!
//! Every protocol decision of the network lives here, and nothing else does:
//! no sockets, no clocks, no threads, no async runtime. Time comes in as a
//! [`Timestamp`] argument, randomness as a seed, and I/O goes out as values
//! that the caller drains with `poll_*` methods and performs itself. The
//! genesis server, the peers, the dashboard and the browser client all drive
//! the same machines, so the same rules hold everywhere.

pub mod auth;
pub mod client;
mod contacts;
pub mod contextionary;
pub mod fanout;
pub mod fetch;
pub mod filter;
pub mod graphql;
pub mod membership;
pub mod names;
pub mod network;
pub mod object;
pub mod rank;
pub mod registry;
pub mod relay;
pub mod replica;
pub mod schema;
pub mod tab_link;
pub mod time;
pub mod wire;

pub use names::{Limits, NameError, PeerName, PeerUri};
pub use time::Timestamp;
#[cfg(feature = "sim")]
pub mod replica_sim;
#[cfg(feature = "sim")]
pub mod sim;
