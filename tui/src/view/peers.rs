//! The peers view: the live table, the event log and the peer-count chart.

use plexus_core::wire::ChangeKind;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, List, ListItem, Paragraph, Row, Scrollbar, ScrollbarOrientation, ScrollbarState,
    Sparkline, Table,
};

use super::age_style;
use crate::model::{Connection, Model, PeerState, SortKey, clock, human_age, short_hash};

/// Draws the peers view into `area`.
pub fn render(model: &Model, frame: &mut Frame, area: Rect) {
    let [table, bottom] = Layout::vertical([Constraint::Min(4), Constraint::Length(8)]).areas(area);
    render_table(model, frame, table);
    let [log, chart] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(bottom);
    render_log(model, frame, log);
    render_chart(model, frame, chart);
}

/// The first row to show so that the selected one is on screen.
fn first_row(model: &Model, rows: usize) -> usize {
    let rows = rows.max(1);
    let mut offset = model.offset.min(model.order.len().saturating_sub(rows));
    if model.selected < offset {
        offset = model.selected;
    } else if model.selected >= offset + rows {
        offset = model.selected + 1 - rows;
    }
    offset
}

fn render_table(model: &Model, frame: &mut Frame, area: Rect) {
    let mut title = vec![Span::raw(format!(
        " Peers {}/{} ",
        model.order.len(),
        model.peers.len()
    ))];
    if model.filter_editing || !model.filter.is_empty() {
        let cursor = if model.filter_editing { "▏" } else { "" };
        title.push(Span::styled(
            format!("/{}{cursor} ", model.filter),
            Style::new().fg(Color::Yellow),
        ));
    }
    let mut block = Block::bordered().title(Line::from(title));
    if let Connection::Disconnected { reason } = &model.connection {
        block = block.title_bottom(Line::from(vec![
            Span::styled(
                " disconnected, retrying: ",
                Style::new().fg(Color::Red).bold(),
            ),
            Span::raw(format!("{reason} ")),
        ]));
    }
    let inner_rows = usize::from(area.height.saturating_sub(3));
    let offset = first_row(model, inner_rows);
    let end = (offset + inner_rows).min(model.order.len());

    let arrow = if model.descending { "▼" } else { "▲" };
    let header_cell = |name: &'static str, key: SortKey| {
        if model.sort == key {
            Cell::from(format!("{name} {arrow}")).style(Style::new().fg(Color::Yellow))
        } else {
            Cell::from(name)
        }
    };
    let header = Row::new([
        header_cell("Name", SortKey::Name),
        header_cell("URI", SortKey::Uri),
        header_cell("Ping age", SortKey::Age),
        header_cell("State", SortKey::State),
        header_cell("Schema hash", SortKey::Hash),
    ])
    .style(Style::new().bold());

    // Only the rows on screen are built: the table costs the same with ten
    // peers or ten thousand.
    let rows = model.order[offset..end].iter().enumerate().map(|(k, &i)| {
        let row = &model.peers[i];
        let selected = offset + k == model.selected;
        let state = model.state_of(row);
        let age = model.age_of(&row.peer);
        let (age_text, age_style) = match state {
            PeerState::Alive | PeerState::Late => (human_age(age), age_style(model, age)),
            PeerState::Evicted | PeerState::Left => {
                ("-".to_owned(), Style::new().fg(Color::DarkGray))
            }
        };
        let hash = if selected {
            row.peer.schema_hash.as_str()
        } else {
            short_hash(&row.peer.schema_hash)
        };
        let style = match state {
            PeerState::Evicted | PeerState::Left => Style::new().fg(Color::DarkGray),
            _ => Style::new(),
        };
        let r = Row::new([
            Cell::from(row.peer.peer_name.as_str()),
            Cell::from(row.peer.peer_uri.as_str()),
            Cell::from(age_text).style(age_style),
            Cell::from(state.label()).style(state_style(state)),
            Cell::from(if hash.is_empty() { "-" } else { hash }),
        ])
        .style(style);
        if selected {
            r.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            r
        }
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(28),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);

    if model.order.len() > inner_rows {
        let mut state =
            ScrollbarState::new(model.order.len().saturating_sub(inner_rows)).position(offset);
        frame.render_stateful_widget(
            Scrollbar::new(ScrollbarOrientation::VerticalRight),
            area.inner(ratatui::layout::Margin {
                vertical: 1,
                horizontal: 0,
            }),
            &mut state,
        );
    }
    if model.order.is_empty() {
        let text = match (&model.connection, model.peers.is_empty()) {
            (Connection::Connecting, _) => "waiting for genesis…",
            (Connection::Disconnected { .. }, true) => {
                "genesis cannot be reached; retrying every second"
            }
            (_, true) => "no peer has joined yet",
            (_, false) => "no peer matches the filter",
        };
        let inner = area.inner(ratatui::layout::Margin {
            vertical: 2,
            horizontal: 2,
        });
        frame.render_widget(Paragraph::new(text).fg(Color::DarkGray), inner);
    }
}

fn state_style(state: PeerState) -> Style {
    match state {
        PeerState::Alive => Style::new().fg(Color::Green),
        PeerState::Late => Style::new().fg(Color::Yellow),
        PeerState::Evicted => Style::new().fg(Color::Red),
        PeerState::Left => Style::new().fg(Color::DarkGray),
    }
}

fn render_log(model: &Model, frame: &mut Frame, area: Rect) {
    let rows = usize::from(area.height.saturating_sub(2));
    let skip = model.log.len().saturating_sub(rows);
    let items: Vec<ListItem> = model
        .log
        .iter()
        .skip(skip)
        .map(|entry| {
            let (label, colour) = match entry.kind {
                ChangeKind::Joined => ("joined ", Color::Green),
                ChangeKind::Left => ("left   ", Color::Gray),
                ChangeKind::Evicted => ("evicted", Color::Red),
                ChangeKind::Updated => ("updated", Color::Cyan),
            };
            ListItem::new(Line::from(vec![
                Span::styled(clock(entry.at), Style::new().fg(Color::DarkGray)),
                Span::raw(" "),
                Span::styled(label, Style::new().fg(colour)),
                Span::raw(" "),
                Span::raw(entry.name.to_string()),
            ]))
        })
        .collect();
    frame.render_widget(
        List::new(items).block(Block::bordered().title(" Events (UTC) ")),
        area,
    );
}

fn render_chart(model: &Model, frame: &mut Frame, area: Rect) {
    let width = usize::from(area.width.saturating_sub(2));
    let skip = model.counts.len().saturating_sub(width);
    let data: Vec<u64> = model.counts.iter().skip(skip).copied().collect();
    let max = data.iter().copied().max().unwrap_or(0);
    let title = format!(" Peers alive: {} (max {max}) ", model.alive_count());
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(title))
            .data(&data)
            .max(max.max(1))
            .style(Style::new().fg(Color::Cyan)),
        area,
    );
}
