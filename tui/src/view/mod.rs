//! `view(&Model, &mut Frame)`: draws the model, reads nothing else.

mod detail;
mod peers;
mod query;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::model::{Connection, Model, Tab};

/// Draws the whole dashboard.
pub fn view(model: &Model, frame: &mut Frame) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(model), header);
    match model.tab {
        Tab::Peers => peers::render(model, frame, body),
        Tab::Detail => detail::render(model, frame, body),
        Tab::Query => query::render(model, frame, body),
    }
    frame.render_widget(footer_line(model), footer);
    if model.help {
        help(frame, body);
    }
}

fn header_line(model: &Model) -> Line<'static> {
    let mut spans = vec![
        Span::styled(" Plexus ", Style::new().bold().reversed()),
        Span::raw(" "),
    ];
    for tab in Tab::ALL {
        let style = if tab == model.tab {
            Style::new()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().fg(Color::Gray)
        };
        spans.push(Span::styled(tab.title(), style));
        spans.push(Span::raw("  "));
    }
    spans.push(Span::raw("│ genesis "));
    spans.push(Span::raw(model.config.genesis.clone()).bold());
    spans.push(Span::raw(" "));
    spans.push(connection_span(model));
    spans.push(Span::raw(format!(" │ {} peers", model.alive_count())));
    if let Some(demo) = &model.config.demo {
        spans.push(Span::raw(" │ tab peer app "));
        spans.push(Span::raw(demo.clone()).bold());
    }
    Line::from(spans)
}

/// The state of the link to genesis, coloured.
pub(crate) fn connection_span(model: &Model) -> Span<'static> {
    match &model.connection {
        Connection::Connecting => Span::styled("● connecting", Style::new().fg(Color::Yellow)),
        Connection::Watching => Span::styled(
            format!("● live v{}", model.version),
            Style::new().fg(Color::Green),
        ),
        Connection::Polling => Span::styled(
            format!("● polling v{}", model.version),
            Style::new().fg(Color::Cyan),
        ),
        Connection::Disconnected { .. } => Span::styled(
            "● disconnected, retrying",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    }
}

fn footer_line(model: &Model) -> Line<'static> {
    let keys: &[(&str, &str)] = if model.filter_editing {
        &[("type", "filter"), ("Enter", "keep"), ("Esc", "clear")]
    } else {
        match model.tab {
            Tab::Peers => &[
                ("q", "quit"),
                ("Tab", "view"),
                ("↑↓", "select"),
                ("Enter", "detail"),
                ("/", "filter"),
                ("s", "sort"),
                ("r", "reverse"),
                ("p", "query via selected"),
                ("?", "help"),
            ],
            Tab::Detail => &[
                ("q", "quit"),
                ("Tab", "view"),
                ("↑↓", "scroll"),
                ("?", "help"),
            ],
            Tab::Query => &[
                ("Esc/^C", "quit"),
                ("Tab", "view"),
                ("Enter", "send"),
                ("^J", "newline"),
                ("↑↓", "history"),
                ("PgUp/PgDn", "scroll"),
                ("^P", "via"),
                ("^U", "clear"),
                ("F1", "help"),
            ],
        }
    };
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(format!(" {key} "), Style::new().reversed()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Line::from(spans)
}

const HELP: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous view"),
    ("q, Esc, Ctrl-C", "quit (Query view: Esc or Ctrl-C)"),
    ("?, F1", "this help"),
    ("↑↓ j k PgUp PgDn Home End", "select a peer; scroll"),
    ("mouse wheel", "select a peer; scroll"),
    ("Enter", "Peers: detail; Query: check and send"),
    ("/", "filter by name, URI or hash"),
    ("s / r", "sort by the next column / reverse"),
    (
        "p (Query: Ctrl-P)",
        "queries via the selected peer or --peer",
    ),
    ("↑↓ (Query)", "query history"),
    ("Ctrl-J, Alt-Enter (Query)", "new line in the query"),
    ("Ctrl-U (Query)", "clear the query"),
];

fn help(frame: &mut Frame, area: Rect) {
    let width = 72.min(area.width);
    let height = (HELP.len() as u16 + 4).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!(" {key:<26} "), Style::new().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Keys (any key closes) ")),
        popup,
    );
}

/// The colour of a ping age, from green to red as it nears the peer timeout.
pub(crate) fn age_style(model: &Model, age: std::time::Duration) -> Style {
    let timeout = model
        .config
        .peer_timeout
        .max(std::time::Duration::from_millis(1));
    let ratio = age.as_secs_f64() / timeout.as_secs_f64();
    let colour = if ratio < 0.5 {
        Color::Green
    } else if ratio < 0.8 {
        Color::Yellow
    } else {
        Color::Red
    };
    Style::new().fg(colour)
}
