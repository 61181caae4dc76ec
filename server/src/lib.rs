//! plexus-server: see the README.
