//! plexus-wasm: see the README.
