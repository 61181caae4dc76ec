//! `plexus-dash`: the terminal dashboard of a Plexus network.
//!
//! Built in the Elm architecture: a [`Model`](model::Model), the
//! [`Message`](update::Message)s that change it, [`update`](update::update)
//! and [`view`](view::view). Network tasks ([`net`]) and the terminal
//! ([`app`]) only turn the outside world into messages and perform the
//! [`Command`](model::Command)s the model asks for; every decision is in
//! `update`, which tests drive without a terminal.

pub mod app;
pub mod cli;
pub mod demo;
pub mod devnet;
pub mod model;
pub mod net;
pub mod sse;
pub mod update;
pub mod view;
