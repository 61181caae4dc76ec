//! Rendering with ratatui's `TestBackend`: insta snapshots of the symbols,
//! and assertions on the styles that carry meaning. Times, ids and hashes are
//! fixed by the fixtures, so the snapshots need no redaction.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use plexus_core::wire::ChangeKind;
use plexus_tui::app::dispatch;
use plexus_tui::model::{Model, QueryOutcome, Source, Tab};
use plexus_tui::update::{Message, set_query_text};
use plexus_tui::view::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use serde_json::json;

fn render(model: &Model, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view(model, f)).unwrap();
    terminal
}

/// The first cell whose row contains `needle`, as (x, y).
fn find(buffer: &Buffer, needle: &str) -> (u16, u16) {
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        if let Some(at) = line.find(needle) {
            let x = line[..at].chars().count() as u16;
            return (x, y);
        }
    }
    panic!("{needle:?} not on screen");
}

fn model_with_history() -> Model {
    let mut model = watched_model();
    dispatch(
        &mut model,
        change(4, ChangeKind::Joined, peer(4, "PeerD", 8084, 0, "")),
    );
    dispatch(
        &mut model,
        change(5, ChangeKind::Evicted, peer(4, "PeerD", 8084, 0, "")),
    );
    for s in 0..5 {
        dispatch(&mut model, Message::Tick(now(s * 100)));
    }
    dispatch(&mut model, Message::Resize(110, 24));
    model
}

#[test]
fn peers_view() {
    let model = model_with_history();
    let terminal = render(&model, 110, 24);
    insta::assert_snapshot!(terminal.backend());
    let buffer = terminal.backend().buffer();
    // The selected row shows the full hash; the others the short form.
    find(buffer, &HASH_A[..40]);
    find(buffer, "bbbb1111bbbb ");
    // Ping ages turn as they near the 30 s timeout.
    let (x, y) = find(buffer, "1.6s");
    assert_eq!(buffer[(x, y)].fg, Color::Green);
    let (x, y) = find(buffer, "17s");
    assert_eq!(buffer[(x, y)].fg, Color::Yellow);
    let (x, y) = find(buffer, "26s");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
    let (x, y) = find(buffer, "evicted PeerD");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn peers_view_filtered_and_sorted() {
    let mut model = model_with_history();
    dispatch(&mut model, Message::CycleSort);
    dispatch(&mut model, Message::CycleSort);
    dispatch(&mut model, Message::ReverseSort);
    dispatch(&mut model, Message::StartFilter);
    for c in "peer".chars() {
        dispatch(
            &mut model,
            Message::Key(ratatui::crossterm::event::KeyEvent::from(
                ratatui::crossterm::event::KeyCode::Char(c),
            )),
        );
    }
    insta::assert_snapshot!(render(&model, 110, 16).backend());
}

#[test]
fn detail_view() {
    let mut model = model_with_history();
    dispatch(&mut model, Message::OpenDetail);
    assert_eq!(model.tab, Tab::Detail);
    insta::assert_snapshot!(render(&model, 100, 20).backend());
}

#[test]
fn query_result_with_a_per_peer_error() {
    let mut model = model_with_history();
    model.tab = Tab::Query;
    set_query_text(
        &mut model,
        "{ Network { Get { PeerA { Things { City { name } } } PeerB { Things { Country { name } } } } } }",
    );
    let response = json!({
        "data": {"Network": {"Get": {
            "PeerA": {"Things": {"City": [{"name": "Amsterdam"}, {"name": "Berlin"}]}},
            "PeerB": null}}},
        "errors": [{"message": "peer PeerB did not answer: connection refused", "path": ["Network", "Get", "PeerB"]}]
    });
    dispatch(
        &mut model,
        Message::QueryAnswered(QueryOutcome {
            via: "http://127.0.0.1:8081".into(),
            elapsed: Duration::from_millis(42),
            result: Ok(response),
        }),
    );
    let terminal = render(&model, 110, 26);
    insta::assert_snapshot!(terminal.backend());
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "✗ PeerB");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
    let (x, y) = find(buffer, "\"PeerB\": null");
    assert_eq!(
        buffer[(x, y)].fg,
        Color::Red,
        "the failed peer's data is highlighted"
    );
    let (x, y) = find(buffer, "\"PeerA\"");
    assert_eq!(buffer[(x, y)].fg, Color::Cyan);
}

#[test]
fn query_validation_error_in_place() {
    let mut model = model_with_history();
    model.tab = Tab::Query;
    set_query_text(
        &mut model,
        "{ Network { Get { PeerB { Things { City { name } } } PeerZ { Things { X { y } } } } } }",
    );
    let terminal = render(&model, 100, 10);
    insta::assert_snapshot!(terminal.backend());
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "unknown peer \"PeerZ\"");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn disconnected_before_any_peer() {
    let mut model = Model::new(config(), now(0));
    dispatch(
        &mut model,
        Message::Disconnected("cannot connect: Connection refused".into()),
    );
    dispatch(&mut model, Message::Resize(100, 16));
    let terminal = render(&model, 100, 16);
    insta::assert_snapshot!(terminal.backend());
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "disconnected, retrying");
    assert_eq!(y, 0, "in the header");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn disconnected_keeps_the_last_known_peers() {
    let mut model = model_with_history();
    dispatch(&mut model, Message::Disconnected("timed out".into()));
    insta::assert_snapshot!(render(&model, 110, 16).backend());
}

#[test]
fn help_overlay() {
    let mut model = model_with_history();
    dispatch(&mut model, Message::ToggleHelp);
    insta::assert_snapshot!(render(&model, 100, 24).backend());
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut model = model_with_history();
    for tab in Tab::ALL {
        model.tab = tab;
        model.help = true;
        for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 8)] {
            render(&model, w, h);
        }
    }
    let _ = Source::Poll;
}
