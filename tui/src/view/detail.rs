//! The detail view: the selected peer's record and, fetched from the peer, its schema.

use plexus_core::schema::{Kind, Schema};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::age_style;
use crate::model::{Model, PeerState, SchemaState, clock, human_age};

/// Draws the detail view into `area`.
pub fn render(model: &Model, frame: &mut Frame, area: Rect) {
    let Some(row) = model.selected_row() else {
        frame.render_widget(
            Paragraph::new("No peer selected: pick one in the Peers view (Tab, ↑↓, Enter).")
                .fg(Color::DarkGray)
                .block(Block::bordered().title(" Detail ")),
            area,
        );
        return;
    };
    let [record, schema] =
        Layout::vertical([Constraint::Length(8), Constraint::Min(3)]).areas(area);
    let peer = &row.peer;
    let state = model.state_of(row);
    let age = model.age_of(peer);
    let field = |name: &str| Span::styled(format!("{name:>16}  "), Style::new().bold());
    let mut state_text = state.label().to_owned();
    if let Some((_, at)) = row.gone {
        state_text.push_str(&format!(" at {}", clock(at)));
    }
    let age_span = match state {
        PeerState::Alive | PeerState::Late => Span::styled(human_age(age), age_style(model, age)),
        _ => Span::raw("-"),
    };
    let lines = vec![
        Line::from(vec![field("id"), Span::raw(peer.id.to_string())]),
        Line::from(vec![
            field("peerName"),
            Span::raw(peer.peer_name.to_string()),
        ]),
        Line::from(vec![field("peerUri"), Span::raw(peer.peer_uri.to_string())]),
        Line::from(vec![
            field("last_contact_at"),
            Span::raw(format!(
                "{} ({} UTC, ",
                peer.last_contact_at.as_millis(),
                clock(peer.last_contact_at)
            )),
            age_span,
            Span::raw(" ago)"),
        ]),
        Line::from(vec![
            field("schema_hash"),
            Span::raw(if peer.schema_hash.is_empty() {
                "-".to_owned()
            } else {
                peer.schema_hash.to_string()
            }),
        ]),
        Line::from(vec![field("state"), Span::raw(state_text)]),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(format!(" Peer {} ", peer.peer_name))),
        record,
    );

    let lines = match model.schemas.get(&peer.peer_name) {
        None => vec![Line::from("not fetched").fg(Color::DarkGray)],
        Some(SchemaState::Loading { .. }) => vec![Line::from("fetching…").fg(Color::DarkGray)],
        Some(SchemaState::Failed { error, .. }) => {
            vec![Line::from(format!("could not fetch the schema: {error}")).fg(Color::Red)]
        }
        Some(SchemaState::Loaded { schema, .. }) => schema_lines(schema),
    };
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((model.detail_scroll, 0))
            .block(
                Block::bordered().title(format!(" Schema of {} (GET /v1/schema) ", peer.peer_name)),
            ),
        schema,
    );
}

/// One line per class, then one per property with its type.
pub(crate) fn schema_lines(schema: &Schema) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for kind in Kind::ALL {
        let classes = &schema.list(kind).classes;
        if classes.is_empty() {
            continue;
        }
        lines.push(Line::from(kind.graphql_field()).fg(Color::Magenta).bold());
        for class in classes {
            let mut head = vec![
                Span::raw("  "),
                Span::styled(class.class.clone(), Style::new().bold().fg(Color::Yellow)),
            ];
            if !class.description.is_empty() {
                head.push(Span::styled(
                    format!("  {}", class.description),
                    Style::new().fg(Color::DarkGray),
                ));
            }
            lines.push(Line::from(head));
            for property in &class.properties {
                lines.push(Line::from(vec![
                    Span::raw(format!("    {:<20} ", property.name)),
                    Span::styled(property.data_type.join(" | "), Style::new().fg(Color::Cyan)),
                ]));
            }
        }
    }
    if lines.is_empty() {
        lines.push(Line::from("(empty schema)").fg(Color::DarkGray));
    }
    lines
}
