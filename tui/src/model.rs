//! The dashboard's state: everything the view draws, nothing it fetches.
//!
//! The model never reads a clock or a socket. Time comes in with
//! [`Message::Tick`](crate::update::Message::Tick), data with the messages
//! that network tasks send; effects go out as [`Command`]s that the runtime
//! drains with [`Model::drain_commands`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use plexus_core::graphql::GraphQLError;
use plexus_core::schema::Schema;
use plexus_core::wire::{ChangeKind, Peer};
use plexus_core::{PeerName, PeerUri, Timestamp};
use serde_json::Value as Json;

/// How many entries the event log keeps.
pub const LOG_CAPACITY: usize = 200;
/// How many samples of the peer count the chart keeps (one per tick).
pub const CHART_CAPACITY: usize = 300;

/// The dashboard's settings, from its command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// The genesis server watched.
    pub genesis: String,
    /// The peer Network queries go through, unless the selected one is used.
    pub peer: Option<String>,
    /// The genesis peer timeout, for colouring ping ages.
    pub peer_timeout: Duration,
    /// The URL of the demo app that `--devnet` serves, shown in the header.
    pub demo: Option<String>,
}

/// The views, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// The live table of peers.
    Peers,
    /// The selected peer's record and schema.
    Detail,
    /// The Network query editor and its result.
    Query,
}

impl Tab {
    /// All views, in Tab order.
    pub const ALL: [Tab; 3] = [Tab::Peers, Tab::Detail, Tab::Query];

    /// The title of its tab.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Peers => "Peers",
            Tab::Detail => "Detail",
            Tab::Query => "Query",
        }
    }
}

/// How a peer is doing, as far as genesis tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerState {
    /// Pinged recently.
    Alive,
    /// Silent for more than half the peer timeout.
    Late,
    /// Evicted by genesis for silence.
    Evicted,
    /// Deregistered.
    Left,
}

impl PeerState {
    /// Its label in the table.
    pub fn label(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Late => "late",
            PeerState::Evicted => "evicted",
            PeerState::Left => "left",
        }
    }
}

/// One row of the peers table.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRow {
    /// The peer as genesis last described it.
    pub peer: Peer,
    /// Set once it left or was evicted: how, and when the dashboard learnt it.
    pub gone: Option<(ChangeKind, Timestamp)>,
}

/// The column the table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Peer name.
    Name,
    /// Peer URI.
    Uri,
    /// Ping age (time since last contact).
    Age,
    /// Schema hash.
    Hash,
    /// State.
    State,
}

impl SortKey {
    /// The next column, for the sort key.
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::Uri,
            SortKey::Uri => SortKey::Age,
            SortKey::Age => SortKey::Hash,
            SortKey::Hash => SortKey::State,
            SortKey::State => SortKey::Name,
        }
    }
}

/// The link to genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Not heard from genesis yet.
    Connecting,
    /// Following the watch stream.
    Watching,
    /// Polling `GET /peers` (the watch stream failed).
    Polling,
    /// Genesis cannot be reached; the tasks keep retrying.
    Disconnected {
        /// Why, in one line.
        reason: String,
    },
}

/// Where a snapshot of the peer list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `snapshot` event of the watch stream.
    Watch,
    /// A poll of `GET /peers`.
    Poll,
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When the dashboard learnt it.
    pub at: Timestamp,
    /// What happened.
    pub kind: ChangeKind,
    /// To whom.
    pub name: PeerName,
}

/// A peer's schema as the dashboard fetched it.
#[derive(Clone, Debug, PartialEq)]
pub enum SchemaState {
    /// Being fetched, for this schema hash.
    Loading {
        /// The hash genesis gave when the fetch started.
        hash: String,
    },
    /// Fetched.
    Loaded {
        /// The hash genesis gave when the fetch started.
        hash: String,
        /// The schema.
        schema: Schema,
    },
    /// The fetch failed.
    Failed {
        /// The hash genesis gave when the fetch started.
        hash: String,
        /// Why.
        error: String,
    },
}

impl SchemaState {
    /// The hash this state is for.
    pub fn hash(&self) -> &str {
        match self {
            SchemaState::Loading { hash }
            | SchemaState::Loaded { hash, .. }
            | SchemaState::Failed { hash, .. } => hash,
        }
    }
}

/// What came back from a query.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryOutcome {
    /// The peer URI it went through.
    pub via: String,
    /// How long it took.
    pub elapsed: Duration,
    /// The GraphQL response, or why there is none.
    pub result: Result<Json, String>,
}

/// The query editor, its history and its last result.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QueryState {
    /// The text being edited.
    pub text: String,
    /// The cursor, in characters from the start of `text`.
    pub cursor: usize,
    /// Queries sent, oldest first.
    pub history: Vec<String>,
    /// Which history entry is shown, while browsing it.
    pub history_pos: Option<usize>,
    /// The text being edited before browsing the history.
    pub draft: String,
    /// The planner's verdict on `text`: the peers it would ask, or its errors.
    pub validation: Option<Result<Vec<String>, Vec<GraphQLError>>>,
    /// A query is on its way.
    pub in_flight: bool,
    /// The last result.
    pub outcome: Option<QueryOutcome>,
    /// First line of the result shown.
    pub scroll: u16,
    /// Send through the selected peer rather than `--peer`.
    pub via_selected: bool,
}

/// An effect the runtime performs for the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `GET {uri}/v1/schema`, answered with `SchemaLoaded`.
    FetchSchema {
        /// Whose.
        peer: PeerName,
        /// Where.
        uri: PeerUri,
        /// The hash genesis gave for it.
        hash: String,
    },
    /// `POST {via}/v1/graphql`, answered with `QueryAnswered`.
    SendQuery {
        /// The peer URI to send it through.
        via: String,
        /// The query text.
        query: String,
    },
}

/// The whole state of the dashboard.
#[derive(Clone, Debug)]
pub struct Model {
    /// Settings.
    pub config: Config,
    /// The last tick's time.
    pub now: Timestamp,
    /// The view shown.
    pub tab: Tab,
    /// The link to genesis.
    pub connection: Connection,
    /// The latest peer list version seen.
    pub version: u64,
    /// Every peer seen, alive or gone.
    pub peers: Vec<PeerRow>,
    /// Positions in `peers` by name.
    pub index: BTreeMap<PeerName, usize>,
    /// Positions in `peers` that pass the filter, in sort order.
    pub order: Vec<usize>,
    /// Sort column.
    pub sort: SortKey,
    /// Sort descending.
    pub descending: bool,
    /// Filter text (substring of name, URI or hash).
    pub filter: String,
    /// The filter line has the keyboard.
    pub filter_editing: bool,
    /// Selected position in `order`.
    pub selected: usize,
    /// First row shown of the table.
    pub offset: usize,
    /// Rows of the table that fit on screen, as last computed from the terminal size.
    pub page: usize,
    /// Joins, leaves, evictions and updates, newest last.
    pub log: VecDeque<LogEntry>,
    /// Number of peers alive at each tick, oldest first.
    pub counts: VecDeque<u64>,
    /// Fetched schemas, by peer.
    pub schemas: BTreeMap<PeerName, SchemaState>,
    /// The query view.
    pub query: QueryState,
    /// The help overlay is shown.
    pub help: bool,
    /// First line of the detail view shown.
    pub detail_scroll: u16,
    /// The user asked to quit.
    pub quit: bool,
    /// Effects to perform.
    pub commands: Vec<Command>,
}

impl Model {
    /// A model with no peers yet, at `now`.
    pub fn new(config: Config, now: Timestamp) -> Self {
        let via_selected = config.peer.is_none();
        Self {
            config,
            now,
            tab: Tab::Peers,
            connection: Connection::Connecting,
            version: 0,
            peers: Vec::new(),
            index: BTreeMap::new(),
            order: Vec::new(),
            sort: SortKey::Name,
            descending: false,
            filter: String::new(),
            filter_editing: false,
            selected: 0,
            offset: 0,
            page: 20,
            log: VecDeque::new(),
            counts: VecDeque::new(),
            schemas: BTreeMap::new(),
            query: QueryState {
                via_selected,
                ..QueryState::default()
            },
            help: false,
            detail_scroll: 0,
            quit: false,
            commands: Vec::new(),
        }
    }

    /// Takes the effects requested since the last call.
    #[must_use]
    pub fn drain_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// The state of `row` at the model's `now`.
    pub fn state_of(&self, row: &PeerRow) -> PeerState {
        match row.gone {
            Some((ChangeKind::Evicted, _)) => PeerState::Evicted,
            Some(_) => PeerState::Left,
            None if self.age_of(&row.peer) * 2 > self.config.peer_timeout => PeerState::Late,
            None => PeerState::Alive,
        }
    }

    /// Time since genesis last heard from `peer`.
    pub fn age_of(&self, peer: &Peer) -> Duration {
        self.now.saturating_since(peer.last_contact_at)
    }

    /// Number of peers that have not left nor been evicted.
    pub fn alive_count(&self) -> usize {
        self.peers.iter().filter(|r| r.gone.is_none()).count()
    }

    /// The selected row, if any.
    pub fn selected_row(&self) -> Option<&PeerRow> {
        self.order
            .get(self.selected)
            .and_then(|&i| self.peers.get(i))
    }

    /// The URI Network queries go through now, or why there is none.
    pub fn query_via(&self) -> Result<String, &'static str> {
        if self.query.via_selected {
            self.selected_row()
                .map(|r| r.peer.peer_uri.as_str().to_owned())
                .ok_or("no peer selected: select one in the Peers view")
        } else {
            self.config
                .peer
                .clone()
                .ok_or("no --peer given: press Ctrl-P to use the selected peer")
        }
    }

    /// The schemas fetched so far, for the planner.
    pub fn loaded_schemas(&self) -> BTreeMap<PeerName, &Schema> {
        self.schemas
            .iter()
            .filter_map(|(name, s)| match s {
                SchemaState::Loaded { schema, .. } => Some((name.clone(), schema)),
                _ => None,
            })
            .collect()
    }

    /// Recomputes `order` after a change of peers, filter or sort, keeping
    /// the selected peer selected when it is still shown.
    pub fn reorder(&mut self) {
        let selected_name = self.selected_row().map(|r| r.peer.peer_name.clone());
        let filter = self.filter.to_lowercase();
        let mut order: Vec<usize> = (0..self.peers.len())
            .filter(|&i| filter.is_empty() || matches_filter(&self.peers[i].peer, &filter))
            .collect();
        let peers = &self.peers;
        match self.sort {
            SortKey::Name => {
                order.sort_by(|&a, &b| peers[a].peer.peer_name.cmp(&peers[b].peer.peer_name))
            }
            SortKey::Uri => {
                order.sort_by(|&a, &b| peers[a].peer.peer_uri.cmp(&peers[b].peer.peer_uri))
            }
            // Most recent contact first: the youngest age.
            SortKey::Age => order.sort_by(|&a, &b| {
                peers[b]
                    .peer
                    .last_contact_at
                    .cmp(&peers[a].peer.last_contact_at)
            }),
            SortKey::Hash => {
                order.sort_by(|&a, &b| peers[a].peer.schema_hash.cmp(&peers[b].peer.schema_hash))
            }
            SortKey::State => order.sort_by(|&a, &b| {
                let key = |i: usize| (self.state_of(&peers[i]), &peers[i].peer.peer_name);
                key(a).cmp(&key(b))
            }),
        }
        if self.descending {
            order.reverse();
        }
        self.order = order;
        if let Some(name) = selected_name
            && let Some(&i) = self.index.get(&name)
            && let Some(pos) = self.order.iter().position(|&o| o == i)
        {
            self.selected = pos;
        }
        self.selected = self.selected.min(self.order.len().saturating_sub(1));
        self.scroll_to_selected();
    }

    /// Moves `offset` so that the selected row is on screen.
    pub fn scroll_to_selected(&mut self) {
        let page = self.page.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + page {
            self.offset = self.selected + 1 - page;
        }
        self.offset = self.offset.min(self.order.len().saturating_sub(page));
    }

    /// Adds or replaces `peer` (a new registration under a known name
    /// replaces the old one). Returns whether it was new or had come back.
    pub fn upsert(&mut self, peer: Peer) -> bool {
        match self.index.get(&peer.peer_name) {
            Some(&i) => {
                let row = &mut self.peers[i];
                let back = row.gone.is_some();
                row.peer = peer;
                row.gone = None;
                back
            }
            None => {
                self.index.insert(peer.peer_name.clone(), self.peers.len());
                self.peers.push(PeerRow { peer, gone: None });
                true
            }
        }
    }

    /// Appends to the event log, dropping the oldest entries past its capacity.
    pub fn log(&mut self, kind: ChangeKind, name: PeerName) {
        self.log.push_back(LogEntry {
            at: self.now,
            kind,
            name,
        });
        while self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
    }

    /// Asks for the schema of every live peer whose hash differs from the one fetched.
    pub fn request_stale_schemas(&mut self) {
        for row in &self.peers {
            if row.gone.is_some() {
                continue;
            }
            let name = &row.peer.peer_name;
            let stale = self
                .schemas
                .get(name)
                .is_none_or(|s| s.hash() != row.peer.schema_hash.as_str());
            if stale {
                let hash = row.peer.schema_hash.to_string();
                self.schemas
                    .insert(name.clone(), SchemaState::Loading { hash: hash.clone() });
                self.commands.push(Command::FetchSchema {
                    peer: name.clone(),
                    uri: row.peer.peer_uri.clone(),
                    hash,
                });
            }
        }
    }
}

fn matches_filter(peer: &Peer, lowercase_filter: &str) -> bool {
    [
        peer.peer_name.as_str(),
        peer.peer_uri.as_str(),
        peer.schema_hash.as_str(),
    ]
    .iter()
    .any(|field| field.to_lowercase().contains(lowercase_filter))
}

/// `HH:MM:SS` (UTC) of a timestamp.
pub fn clock(at: Timestamp) -> String {
    let secs = at.as_millis() / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// A short human age: `0.4s`, `12s`, `3m04s`, `2h05m`.
pub fn human_age(age: Duration) -> String {
    let ms = age.as_millis();
    let s = age.as_secs();
    if ms < 10_000 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    }
}

/// The first 12 characters of a schema hash, or `-` when there is none yet.
pub fn short_hash(hash: &str) -> &str {
    if hash.is_empty() {
        "-"
    } else {
        hash.get(..12).unwrap_or(hash)
    }
}
