//! End-to-end tests of Plexus live in `tests/`: they spawn the real
//! `plexus-genesis` and `plexus-peer` binaries on loopback.
