//! plexus-tui: see the README.
