//! Messages and the `update` function: state + message → new state.
//!
//! Raw terminal events ([`Message::Key`], [`Message::Mouse`]) are mapped to
//! actions (the message `update` returns), which are then applied; the
//! runtime feeds every returned message back until there is none.

use std::time::Duration;

use plexus_core::network::plan;
use plexus_core::schema::Schema;
use plexus_core::wire::{ChangeKind, Peer, PeerChange};
use plexus_core::{PeerName, Timestamp};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use serde_json::Map;

use crate::model::{
    CHART_CAPACITY, Command, Connection, Model, QueryOutcome, SchemaState, Source, Tab,
};

/// Everything that can happen to the dashboard.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A second passed (ping ages move on); it is now this instant.
    Tick(Timestamp),
    /// A key was pressed.
    Key(KeyEvent),
    /// The mouse did something.
    Mouse(MouseEvent),
    /// The terminal is now this many columns and rows.
    Resize(u16, u16),
    /// The whole peer list, at a version.
    Snapshot {
        /// The list version (0 when genesis did not tell).
        version: u64,
        /// The peers.
        peers: Vec<Peer>,
        /// Watch stream or poll.
        source: Source,
    },
    /// One change from the watch stream.
    Change(PeerChange),
    /// Fresh contact times, polled while following the watch stream.
    Contacts {
        /// The list version they were read at.
        version: u64,
        /// The peers.
        peers: Vec<Peer>,
    },
    /// Genesis cannot be reached (the tasks retry on their own).
    Disconnected(String),
    /// A schema fetch ended.
    SchemaLoaded {
        /// Whose.
        peer: PeerName,
        /// The hash genesis gave when the fetch started.
        hash: String,
        /// The schema, or why not.
        result: Result<Schema, String>,
    },
    /// A query came back.
    QueryAnswered(QueryOutcome),

    /// Quit the dashboard.
    Quit,
    /// Show the next view.
    NextTab,
    /// Show the previous view.
    PrevTab,
    /// Show or hide the help.
    ToggleHelp,
    /// Move the selection (or scroll) by this many rows.
    Move(isize),
    /// Select the first row.
    First,
    /// Select the last row.
    Last,
    /// Show the selected peer's detail.
    OpenDetail,
    /// Sort by the next column.
    CycleSort,
    /// Reverse the sort order.
    ReverseSort,
    /// Start typing a filter.
    StartFilter,
    /// Check the query and send it.
    SendQuery,
    /// Show the previous query of the history.
    HistoryPrev,
    /// Show the next query of the history.
    HistoryNext,
    /// Send through the selected peer, or through `--peer`.
    ToggleVia,
}

/// Applies `message` to `model`; returns a follow-up message to apply next.
pub fn update(model: &mut Model, message: Message) -> Option<Message> {
    match message {
        Message::Tick(now) => {
            model.now = now;
            model.counts.push_back(model.alive_count() as u64);
            while model.counts.len() > CHART_CAPACITY {
                model.counts.pop_front();
            }
            if model.sort == crate::model::SortKey::State {
                model.reorder();
            }
        }
        Message::Key(key) => return handle_key(model, key),
        Message::Mouse(mouse) => return handle_mouse(model, mouse),
        Message::Resize(_, rows) => {
            // Header 1, footer 1, table borders and header 3, log and chart 8.
            model.page = usize::from(rows.saturating_sub(13)).max(1);
            model.scroll_to_selected();
        }
        Message::Snapshot {
            version,
            peers,
            source,
        } => apply_snapshot(model, version, peers, source),
        Message::Change(change) => apply_change(model, change),
        Message::Contacts { version, peers } => {
            if version >= model.version {
                for peer in peers {
                    if let Some(&i) = model.index.get(&peer.peer_name)
                        && model.peers[i].peer.id == peer.id
                        && model.peers[i].gone.is_none()
                    {
                        model.peers[i].peer.last_contact_at = peer.last_contact_at;
                    }
                }
                if model.sort == crate::model::SortKey::Age {
                    model.reorder();
                }
            }
        }
        Message::Disconnected(reason) => model.connection = Connection::Disconnected { reason },
        Message::SchemaLoaded { peer, hash, result } => {
            // An answer for a hash no longer current is still the best we have.
            let state = match result {
                Ok(schema) => SchemaState::Loaded { hash, schema },
                Err(error) => SchemaState::Failed { hash, error },
            };
            model.schemas.insert(peer, state);
            validate(model);
        }
        Message::QueryAnswered(outcome) => {
            model.query.in_flight = false;
            model.query.outcome = Some(outcome);
            model.query.scroll = 0;
        }
        Message::Quit => model.quit = true,
        Message::NextTab | Message::PrevTab => {
            let i = Tab::ALL.iter().position(|&t| t == model.tab).unwrap_or(0);
            let step = if message == Message::NextTab {
                1
            } else {
                Tab::ALL.len() - 1
            };
            model.tab = Tab::ALL[(i + step) % Tab::ALL.len()];
            model.help = false;
        }
        Message::ToggleHelp => model.help = !model.help,
        Message::Move(delta) => match model.tab {
            Tab::Peers => {
                let last = model.order.len().saturating_sub(1);
                model.selected = model.selected.saturating_add_signed(delta).min(last);
                model.scroll_to_selected();
                model.detail_scroll = 0;
            }
            Tab::Detail => model.detail_scroll = scroll(model.detail_scroll, delta),
            Tab::Query => model.query.scroll = scroll(model.query.scroll, delta),
        },
        Message::First => {
            model.selected = 0;
            model.scroll_to_selected();
        }
        Message::Last => {
            model.selected = model.order.len().saturating_sub(1);
            model.scroll_to_selected();
        }
        Message::OpenDetail => {
            if model.selected_row().is_some() {
                model.tab = Tab::Detail;
                model.detail_scroll = 0;
            }
        }
        Message::CycleSort => {
            model.sort = model.sort.next();
            model.reorder();
        }
        Message::ReverseSort => {
            model.descending = !model.descending;
            model.reorder();
        }
        Message::StartFilter => model.filter_editing = true,
        Message::SendQuery => send_query(model),
        Message::HistoryPrev => history_step(model, -1),
        Message::HistoryNext => history_step(model, 1),
        Message::ToggleVia => model.query.via_selected = !model.query.via_selected,
    }
    None
}

fn scroll(at: u16, delta: isize) -> u16 {
    let moved = i64::from(at).saturating_add(i64::try_from(delta).unwrap_or(0));
    u16::try_from(moved.clamp(0, i64::from(u16::MAX))).unwrap_or(0)
}

fn handle_key(model: &mut Model, key: KeyEvent) -> Option<Message> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if ctrl => return Some(Message::Quit),
        KeyCode::F(1) => return Some(Message::ToggleHelp),
        KeyCode::Tab => return Some(Message::NextTab),
        KeyCode::BackTab => return Some(Message::PrevTab),
        _ => {}
    }
    if model.help {
        return match key.code {
            KeyCode::Char('q') => Some(Message::Quit),
            _ => Some(Message::ToggleHelp),
        };
    }
    if model.filter_editing {
        edit_filter(model, key);
        return None;
    }
    if model.tab == Tab::Query {
        return edit_query(model, key);
    }
    let page = model.page.max(1) as isize;
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => Some(Message::Quit),
        KeyCode::Char('?') => Some(Message::ToggleHelp),
        KeyCode::Up | KeyCode::Char('k') => Some(Message::Move(-1)),
        KeyCode::Down | KeyCode::Char('j') => Some(Message::Move(1)),
        KeyCode::PageUp => Some(Message::Move(-page)),
        KeyCode::PageDown => Some(Message::Move(page)),
        KeyCode::Home | KeyCode::Char('g') => Some(Message::First),
        KeyCode::End | KeyCode::Char('G') => Some(Message::Last),
        KeyCode::Enter if model.tab == Tab::Peers => Some(Message::OpenDetail),
        KeyCode::Char('s') => Some(Message::CycleSort),
        KeyCode::Char('r') => Some(Message::ReverseSort),
        KeyCode::Char('/') => Some(Message::StartFilter),
        KeyCode::Char('p') => Some(Message::ToggleVia),
        _ => None,
    }
}

fn edit_filter(model: &mut Model, key: KeyEvent) {
    match key.code {
        KeyCode::Enter => model.filter_editing = false,
        KeyCode::Esc => {
            model.filter_editing = false;
            model.filter.clear();
        }
        KeyCode::Backspace => {
            model.filter.pop();
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => model.filter.push(c),
        _ => return,
    }
    model.selected = 0;
    model.offset = 0;
    model.reorder();
}

fn edit_query(model: &mut Model, key: KeyEvent) -> Option<Message> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let q = &mut model.query;
    let len = q.text.chars().count();
    match key.code {
        KeyCode::Esc => return Some(Message::Quit),
        KeyCode::Enter if alt => insert(model, '\n'),
        KeyCode::Char('j') if ctrl => insert(model, '\n'),
        KeyCode::Enter => return Some(Message::SendQuery),
        KeyCode::Up => return Some(Message::HistoryPrev),
        KeyCode::Down => return Some(Message::HistoryNext),
        KeyCode::PageUp => return Some(Message::Move(-10)),
        KeyCode::PageDown => return Some(Message::Move(10)),
        KeyCode::Char('p') if ctrl => return Some(Message::ToggleVia),
        KeyCode::Char('u') if ctrl => {
            q.text.clear();
            q.cursor = 0;
            validate(model);
        }
        KeyCode::Left => q.cursor = q.cursor.saturating_sub(1),
        KeyCode::Right => q.cursor = (q.cursor + 1).min(len),
        KeyCode::Home => q.cursor = 0,
        KeyCode::End => q.cursor = len,
        KeyCode::Backspace if q.cursor > 0 => {
            let at = byte_index(&q.text, q.cursor - 1);
            q.text.remove(at);
            q.cursor -= 1;
            validate(model);
        }
        KeyCode::Delete if q.cursor < len => {
            let at = byte_index(&q.text, q.cursor);
            q.text.remove(at);
            validate(model);
        }
        KeyCode::Char(c) if !ctrl => insert(model, c),
        _ => {}
    }
    None
}

fn insert(model: &mut Model, c: char) {
    let q = &mut model.query;
    let at = byte_index(&q.text, q.cursor);
    q.text.insert(at, c);
    q.cursor += 1;
    q.history_pos = None;
    validate(model);
}

fn byte_index(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

fn handle_mouse(model: &Model, mouse: MouseEvent) -> Option<Message> {
    let _ = model;
    match mouse.kind {
        MouseEventKind::ScrollUp => Some(Message::Move(-3)),
        MouseEventKind::ScrollDown => Some(Message::Move(3)),
        _ => None,
    }
}

/// Sets the editor's text, cursor at its end.
pub fn set_query_text(model: &mut Model, text: impl Into<String>) {
    model.query.text = text.into();
    model.query.cursor = model.query.text.chars().count();
    validate(model);
}

/// Runs the core's planner on the editor's text against the schemas known.
pub fn validate(model: &mut Model) {
    let text = model.query.text.trim();
    model.query.validation = if text.is_empty() {
        None
    } else {
        let schemas = model.loaded_schemas();
        Some(
            plan(text, None, &Map::new(), &schemas)
                .map(|p| p.queries.iter().map(|q| q.peer.to_string()).collect()),
        )
    };
}

fn send_query(model: &mut Model) {
    validate(model);
    if model.query.in_flight || !matches!(model.query.validation, Some(Ok(_))) {
        return;
    }
    let via = match model.query_via() {
        Ok(via) => via,
        Err(reason) => {
            model.query.outcome = Some(QueryOutcome {
                via: String::new(),
                elapsed: Duration::ZERO,
                result: Err(reason.to_owned()),
            });
            return;
        }
    };
    let text = model.query.text.clone();
    if model.query.history.last() != Some(&text) {
        model.query.history.push(text.clone());
    }
    model.query.history_pos = None;
    model.query.in_flight = true;
    model.commands.push(Command::SendQuery { via, query: text });
}

fn history_step(model: &mut Model, step: isize) {
    let q = &mut model.query;
    if q.history.is_empty() {
        return;
    }
    let next = match (q.history_pos, step < 0) {
        (None, true) => {
            q.draft = q.text.clone();
            Some(q.history.len() - 1)
        }
        (None, false) => return,
        (Some(0), true) => Some(0),
        (Some(i), true) => Some(i - 1),
        (Some(i), false) if i + 1 < q.history.len() => Some(i + 1),
        (Some(_), false) => None,
    };
    let text = match next {
        Some(i) => q.history[i].clone(),
        None => q.draft.clone(),
    };
    set_query_text(model, text);
    model.query.history_pos = next;
}

fn apply_snapshot(model: &mut Model, version: u64, peers: Vec<Peer>, source: Source) {
    model.connection = match source {
        Source::Watch => Connection::Watching,
        Source::Poll => Connection::Polling,
    };
    // A snapshot replaces everything, its version too (genesis may have restarted).
    model.version = version;
    let mut seen = std::collections::BTreeSet::new();
    for peer in peers {
        let name = peer.peer_name.clone();
        seen.insert(name.clone());
        let old_hash = model
            .index
            .get(&name)
            .map(|&i| model.peers[i].peer.schema_hash.clone());
        let new_hash = peer.schema_hash.clone();
        let came = model.upsert(peer);
        if came {
            model.log(ChangeKind::Joined, name);
        } else if !came && old_hash.is_some_and(|h| h != new_hash) {
            model.log(ChangeKind::Updated, name);
        }
    }
    let now = model.now;
    let mut left = Vec::new();
    for row in &mut model.peers {
        if row.gone.is_none() && !seen.contains(&row.peer.peer_name) {
            row.gone = Some((ChangeKind::Left, now));
            left.push(row.peer.peer_name.clone());
        }
    }
    for name in left {
        model.log(ChangeKind::Left, name);
    }
    model.reorder();
    model.request_stale_schemas();
}

fn apply_change(model: &mut Model, change: PeerChange) {
    if change.version != 0 && change.version <= model.version {
        return;
    }
    model.version = change.version;
    let name = change.peer.peer_name.clone();
    match change.kind {
        ChangeKind::Joined | ChangeKind::Updated => {
            model.upsert(change.peer);
        }
        ChangeKind::Left | ChangeKind::Evicted => {
            // Keep what genesis said last about it, with the id that left.
            let now = model.now;
            model.upsert(change.peer);
            if let Some(&i) = model.index.get(&name) {
                model.peers[i].gone = Some((change.kind, now));
            }
        }
    }
    model.log(change.kind, name);
    model.reorder();
    model.request_stale_schemas();
}
