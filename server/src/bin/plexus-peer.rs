//! plexus-peer (being built).
fn main() {}
