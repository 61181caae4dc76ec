//! `update` without a terminal: a model and a message in, a model out.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use plexus_core::PeerName;
use plexus_core::wire::ChangeKind;
use plexus_tui::app::dispatch;
use plexus_tui::model::{Command, Connection, Model, PeerState, SchemaState, SortKey, Source, Tab};
use plexus_tui::update::{Message, set_query_text, update};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use serde_json::json;

fn key(code: KeyCode) -> Message {
    Message::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> Message {
    Message::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn type_text(model: &mut Model, text: &str) {
    for c in text.chars() {
        dispatch(model, key(KeyCode::Char(c)));
    }
}

fn names(model: &Model) -> Vec<&str> {
    model
        .order
        .iter()
        .map(|&i| model.peers[i].peer.peer_name.as_str())
        .collect()
}

#[test]
fn a_snapshot_fills_the_table_and_asks_for_every_schema() {
    let mut model = Model::new(config(), now(0));
    assert_eq!(model.connection, Connection::Connecting);
    dispatch(
        &mut model,
        Message::Snapshot {
            version: 3,
            peers: three_peers(),
            source: Source::Watch,
        },
    );
    assert_eq!(model.connection, Connection::Watching);
    assert_eq!(model.version, 3);
    assert_eq!(names(&model), ["PeerA", "PeerB", "PeerC"]);
    let fetches: Vec<_> = model
        .drain_commands()
        .into_iter()
        .map(|c| match c {
            Command::FetchSchema { peer, hash, .. } => (peer.to_string(), hash),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(fetches.len(), 3);
    assert_eq!(fetches[1], ("PeerB".to_owned(), HASH_B.to_owned()));
    assert!(model.drain_commands().is_empty(), "drained");
}

#[test]
fn ping_age_sets_the_state_as_it_nears_the_timeout() {
    let mut model = watched_model();
    let state = |m: &Model, name: &str| {
        let row = &m.peers[m.index[&PeerName::new(name).unwrap()]];
        m.state_of(row)
    };
    assert_eq!(state(&model, "PeerA"), PeerState::Alive);
    assert_eq!(state(&model, "PeerB"), PeerState::Late, "17 s of 30 s");
    dispatch(&mut model, Message::Tick(now(20_000)));
    assert_eq!(state(&model, "PeerA"), PeerState::Late);
    assert_eq!(model.counts.back(), Some(&3));
}

#[test]
fn changes_join_leave_evict_and_update_with_a_log_entry_each() {
    let mut model = watched_model();
    let log_before = model.log.len();
    dispatch(
        &mut model,
        change(4, ChangeKind::Joined, peer(4, "PeerD", 8084, 0, "")),
    );
    dispatch(
        &mut model,
        change(
            5,
            ChangeKind::Evicted,
            peer(2, "PeerB", 8082, 31_000, HASH_B),
        ),
    );
    dispatch(
        &mut model,
        change(6, ChangeKind::Left, peer(3, "PeerC", 8083, 0, HASH_C)),
    );
    dispatch(
        &mut model,
        change(7, ChangeKind::Updated, peer(1, "PeerA", 8081, 0, HASH_C)),
    );
    // A change at or below the version seen is a duplicate.
    dispatch(
        &mut model,
        change(6, ChangeKind::Left, peer(1, "PeerA", 8081, 0, HASH_A)),
    );
    let kinds: Vec<_> = model
        .log
        .iter()
        .skip(log_before)
        .map(|e| (e.kind, e.name.to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::Joined, "PeerD".to_owned()),
            (ChangeKind::Evicted, "PeerB".into()),
            (ChangeKind::Left, "PeerC".into()),
            (ChangeKind::Updated, "PeerA".into()),
        ]
    );
    let states: Vec<_> = model
        .order
        .iter()
        .map(|&i| model.state_of(&model.peers[i]))
        .collect();
    assert_eq!(
        states,
        [
            PeerState::Alive,
            PeerState::Evicted,
            PeerState::Left,
            PeerState::Alive
        ]
    );
    assert_eq!(model.alive_count(), 2);
    // The new hash of PeerA and the new peer's schema are fetched; not the gone ones'.
    let fetched: Vec<String> = model
        .drain_commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::FetchSchema { peer, .. } => Some(peer.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(fetched, ["PeerD", "PeerA"]);
    // A peer that registers again under its name comes back.
    dispatch(
        &mut model,
        change(8, ChangeKind::Joined, peer(9, "PeerB", 8082, 0, HASH_B)),
    );
    assert_eq!(
        model.state_of(&model.peers[model.index[&PeerName::new("PeerB").unwrap()]]),
        PeerState::Alive
    );
}

#[test]
fn a_poll_snapshot_marks_missing_peers_as_left_and_genesis_away_as_disconnected() {
    let mut model = watched_model();
    dispatch(&mut model, Message::Disconnected("cannot connect".into()));
    assert_eq!(
        model.connection,
        Connection::Disconnected {
            reason: "cannot connect".into()
        }
    );
    let mut two = three_peers();
    two.pop();
    dispatch(
        &mut model,
        Message::Snapshot {
            version: 0,
            peers: two,
            source: Source::Poll,
        },
    );
    assert_eq!(model.connection, Connection::Polling);
    assert_eq!(
        model.log.back().map(|e| (e.kind, e.name.as_str())),
        Some((ChangeKind::Left, "PeerC"))
    );
}

#[test]
fn contacts_refresh_ping_ages_of_the_same_registration_only() {
    let mut model = watched_model();
    let mut fresh = three_peers();
    for p in &mut fresh {
        p.last_contact_at = now(0);
    }
    fresh[1].id = plexus_core::wire::PeerId(uuid::Uuid::from_u128(99));
    dispatch(
        &mut model,
        Message::Contacts {
            version: 3,
            peers: fresh,
        },
    );
    assert_eq!(model.age_of(&model.peers[0].peer), Duration::ZERO);
    assert_eq!(
        model.age_of(&model.peers[1].peer),
        Duration::from_secs(17),
        "another id: ignored"
    );
}

#[test]
fn keys_move_sort_filter_and_switch_views() {
    let mut model = watched_model();
    dispatch(&mut model, key(KeyCode::Down));
    dispatch(&mut model, key(KeyCode::Char('j')));
    assert_eq!(
        model.selected_row().unwrap().peer.peer_name.as_str(),
        "PeerC"
    );
    dispatch(&mut model, key(KeyCode::Down));
    assert_eq!(model.selected, 2, "stays on the last row");
    // Sorting by age puts the most recent contact first, and keeps the selection.
    dispatch(&mut model, key(KeyCode::Char('s')));
    dispatch(&mut model, key(KeyCode::Char('s')));
    assert_eq!(model.sort, SortKey::Age);
    assert_eq!(names(&model), ["PeerA", "PeerB", "PeerC"]);
    dispatch(&mut model, key(KeyCode::Char('r')));
    assert_eq!(names(&model), ["PeerC", "PeerB", "PeerA"]);
    assert_eq!(
        model.selected_row().unwrap().peer.peer_name.as_str(),
        "PeerC"
    );
    // Filter.
    dispatch(&mut model, key(KeyCode::Char('/')));
    type_text(&mut model, "8082");
    assert_eq!(names(&model), ["PeerB"]);
    dispatch(&mut model, key(KeyCode::Enter));
    assert!(!model.filter_editing);
    dispatch(&mut model, key(KeyCode::Char('/')));
    dispatch(&mut model, key(KeyCode::Esc));
    assert_eq!(names(&model).len(), 3, "Esc clears the filter");
    // Views.
    dispatch(&mut model, key(KeyCode::Enter));
    assert_eq!(model.tab, Tab::Detail);
    dispatch(&mut model, key(KeyCode::Tab));
    assert_eq!(model.tab, Tab::Query);
    dispatch(
        &mut model,
        Message::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
    );
    assert_eq!(model.tab, Tab::Detail);
    // Help, and quitting.
    dispatch(&mut model, key(KeyCode::Char('?')));
    assert!(model.help);
    dispatch(&mut model, key(KeyCode::Char('x')));
    assert!(!model.help, "any key closes the help");
    assert_eq!(
        update(&mut model, key(KeyCode::Char('q'))),
        Some(Message::Quit)
    );
    dispatch(&mut model, ctrl('c'));
    assert!(model.quit);
}

#[test]
fn the_mouse_wheel_scrolls() {
    let mut model = watched_model();
    let wheel = |kind| {
        Message::Mouse(MouseEvent {
            kind,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        })
    };
    dispatch(&mut model, wheel(MouseEventKind::ScrollDown));
    assert_eq!(model.selected, 2);
    dispatch(&mut model, wheel(MouseEventKind::ScrollUp));
    assert_eq!(model.selected, 0);
}

#[test]
fn the_table_scrolls_to_keep_the_selection_visible() {
    let mut model = Model::new(config(), now(0));
    let peers = (0..100)
        .map(|i| peer(i, &format!("P{i:03}"), 9000 + i as u16, 0, ""))
        .collect();
    dispatch(
        &mut model,
        Message::Snapshot {
            version: 1,
            peers,
            source: Source::Poll,
        },
    );
    dispatch(&mut model, Message::Resize(160, 30)); // 17 rows
    assert_eq!(model.page, 17);
    dispatch(&mut model, key(KeyCode::PageDown));
    dispatch(&mut model, key(KeyCode::PageDown));
    assert_eq!((model.selected, model.offset), (34, 18));
    dispatch(&mut model, key(KeyCode::End));
    assert_eq!((model.selected, model.offset), (99, 83));
    dispatch(&mut model, key(KeyCode::Home));
    assert_eq!((model.selected, model.offset), (0, 0));
}

#[test]
fn an_invalid_query_is_shown_and_not_sent() {
    let mut model = watched_model();
    dispatch(&mut model, key(KeyCode::Tab));
    dispatch(&mut model, key(KeyCode::Tab));
    type_text(
        &mut model,
        "{ Network { Get { PeerZ { Things { City { name } } } } } }",
    );
    // Classes and properties are the peer's engine's to judge; a peer the
    // dashboard does not know of is refused before anything is sent.
    let errors = model.query.validation.clone().unwrap().unwrap_err();
    assert!(errors[0].message.contains("PeerZ"), "{errors:?}");
    dispatch(&mut model, key(KeyCode::Enter));
    assert!(model.drain_commands().is_empty());
    assert!(model.query.history.is_empty());
}

#[test]
fn a_valid_query_goes_through_the_peer_and_its_answer_is_kept() {
    let mut model = watched_model();
    model.tab = Tab::Query;
    let q = "{ Network { Get { PeerA { Things { City { name } } } } } }";
    type_text(&mut model, q);
    assert_eq!(model.query.validation, Some(Ok(vec!["PeerA".to_owned()])));
    dispatch(&mut model, key(KeyCode::Enter));
    assert_eq!(
        model.drain_commands(),
        [Command::SendQuery {
            via: "http://127.0.0.1:8081".into(),
            query: q.into()
        }]
    );
    assert!(model.query.in_flight);
    dispatch(&mut model, key(KeyCode::Enter));
    assert!(model.drain_commands().is_empty(), "one at a time");
    let response = json!({"data": {"Network": {"Get": {"PeerA": null}}}});
    dispatch(
        &mut model,
        Message::QueryAnswered(plexus_tui::model::QueryOutcome {
            via: "http://127.0.0.1:8081".into(),
            elapsed: Duration::from_millis(12),
            result: Ok(response.clone()),
        }),
    );
    assert!(!model.query.in_flight);
    assert_eq!(model.query.outcome.as_ref().unwrap().result, Ok(response));
    // Ctrl-P sends through the selected peer instead.
    dispatch(&mut model, ctrl('p'));
    model.selected = 1;
    dispatch(&mut model, key(KeyCode::Enter));
    assert!(
        matches!(&model.drain_commands()[0], Command::SendQuery { via, .. } if via == "http://127.0.0.1:8082")
    );
}

#[test]
fn history_goes_back_and_forth_and_restores_the_draft() {
    let mut model = watched_model();
    model.tab = Tab::Query;
    model.query.history = vec!["one".into(), "two".into()];
    set_query_text(&mut model, "draft");
    dispatch(&mut model, key(KeyCode::Up));
    assert_eq!(model.query.text, "two");
    dispatch(&mut model, key(KeyCode::Up));
    dispatch(&mut model, key(KeyCode::Up));
    assert_eq!(model.query.text, "one");
    dispatch(&mut model, key(KeyCode::Down));
    assert_eq!(model.query.text, "two");
    dispatch(&mut model, key(KeyCode::Down));
    assert_eq!(model.query.text, "draft");
}

#[test]
fn the_editor_edits_at_the_cursor_and_q_is_text_there() {
    let mut model = watched_model();
    model.tab = Tab::Query;
    type_text(&mut model, "aq");
    dispatch(&mut model, key(KeyCode::Left));
    type_text(&mut model, "é");
    dispatch(&mut model, ctrl('j'));
    assert_eq!(model.query.text, "aé\nq");
    dispatch(&mut model, key(KeyCode::Backspace));
    dispatch(&mut model, key(KeyCode::Home));
    dispatch(&mut model, key(KeyCode::Delete));
    assert_eq!(model.query.text, "éq");
    assert!(!model.quit);
    dispatch(&mut model, ctrl('u'));
    assert_eq!(model.query.text, "");
    assert_eq!(update(&mut model, key(KeyCode::Esc)), Some(Message::Quit));
}

#[test]
fn a_failed_schema_fetch_is_kept_with_its_reason() {
    let mut model = watched_model();
    dispatch(
        &mut model,
        Message::SchemaLoaded {
            peer: PeerName::new("PeerC").unwrap(),
            hash: HASH_C.into(),
            result: Err("cannot connect".into()),
        },
    );
    assert!(
        matches!(&model.schemas[&PeerName::new("PeerC").unwrap()], SchemaState::Failed { error, .. } if error == "cannot connect")
    );
}

#[test]
fn a_restarted_genesis_starts_versions_again() {
    let mut model = watched_model();
    dispatch(
        &mut model,
        Message::Snapshot {
            version: 1,
            peers: vec![],
            source: Source::Watch,
        },
    );
    assert_eq!(model.alive_count(), 0);
    dispatch(
        &mut model,
        change(2, ChangeKind::Joined, peer(7, "PeerA", 8081, 0, HASH_A)),
    );
    assert_eq!((model.version, model.alive_count()), (2, 1));
}
