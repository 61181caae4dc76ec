//! plexus-genesis (being built).
fn main() {}
