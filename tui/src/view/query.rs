//! The query view: the editor, the planner's verdict and the result.

use std::collections::BTreeSet;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use serde_json::Value as Json;

use crate::model::Model;

/// Draws the query view into `area`.
pub fn render(model: &Model, frame: &mut Frame, area: Rect) {
    let q = &model.query;
    let text_lines = q.text.split('\n').count() as u16;
    let check_lines = match &q.validation {
        Some(Err(errors)) => (errors.len() as u16).clamp(1, 6),
        _ => 1,
    };
    let [editor, check, result] = Layout::vertical([
        Constraint::Length(text_lines.clamp(1, 8) + 2),
        Constraint::Length(check_lines),
        Constraint::Min(3),
    ])
    .areas(area);

    let via = match model.query_via() {
        Ok(via) => via,
        Err(why) => why.to_owned(),
    };
    let how = if q.via_selected {
        "selected peer"
    } else {
        "--peer"
    };
    let title = format!(" Network query → {via} ({how}) ");
    frame.render_widget(
        Paragraph::new(q.text.as_str()).block(
            Block::bordered()
                .title(title)
                .border_style(Style::new().fg(Color::Yellow)),
        ),
        editor,
    );
    if !model.help {
        let before: String = q.text.chars().take(q.cursor).collect();
        let row = before.matches('\n').count() as u16;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u16;
        let x = (editor.x + 1 + col).min(editor.right().saturating_sub(2));
        let y = (editor.y + 1 + row).min(editor.bottom().saturating_sub(2));
        frame.set_cursor_position(Position { x, y });
    }

    let check_text: Vec<Line> = match &q.validation {
        None => vec![
            Line::from(
                "type a Network query; Enter checks it against the peers' schemas and sends it",
            )
            .fg(Color::DarkGray),
        ],
        Some(Ok(peers)) => vec![Line::from(vec![
            Span::styled("✓ valid", Style::new().fg(Color::Green)),
            Span::raw(format!(": asks {}", peers.join(", "))),
        ])],
        Some(Err(errors)) => errors
            .iter()
            .map(|e| {
                let at = e
                    .locations
                    .first()
                    .map(|l| format!("{}:{} ", l.line, l.column))
                    .unwrap_or_default();
                Line::from(vec![
                    Span::styled("✗ ", Style::new().fg(Color::Red).bold()),
                    Span::styled(at, Style::new().fg(Color::DarkGray)),
                    Span::styled(e.message.clone(), Style::new().fg(Color::Red)),
                ])
            })
            .collect(),
    };
    frame.render_widget(Paragraph::new(check_text), check);

    let (title, lines) = result_lines(model);
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((q.scroll, 0))
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        result,
    );
}

/// The title and the lines of the result box.
fn result_lines(model: &Model) -> (String, Vec<Line<'static>>) {
    let q = &model.query;
    if q.in_flight {
        return (
            " Result ".into(),
            vec![Line::from("waiting for the answer…").fg(Color::DarkGray)],
        );
    }
    let Some(outcome) = &q.outcome else {
        return (" Result ".into(), vec![]);
    };
    let ms = outcome.elapsed.as_secs_f64() * 1000.0;
    let response = match &outcome.result {
        Err(error) => {
            let title = if outcome.via.is_empty() {
                " Result: not sent ".to_owned()
            } else {
                format!(" Result: failed after {ms:.0} ms via {} ", outcome.via)
            };
            return (title, vec![Line::from(error.clone()).fg(Color::Red)]);
        }
        Ok(response) => response,
    };
    let errors: Vec<&Json> = response
        .get("errors")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .collect();
    let title = format!(
        " Result in {ms:.0} ms via {} ({} error{}) ",
        outcome.via,
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    let mut lines = Vec::new();
    let mut failed = BTreeSet::new();
    for error in &errors {
        let message = error
            .get("message")
            .and_then(Json::as_str)
            .unwrap_or("error");
        let path: Vec<String> = error
            .get("path")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
            .collect();
        // Network.Get.<peer>: the third path element names the peer.
        let who = path.get(2).cloned().unwrap_or_else(|| "query".to_owned());
        failed.insert(who.clone());
        lines.push(Line::from(vec![
            Span::styled(
                format!("✗ {who}: "),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::styled(message.to_owned(), Style::new().fg(Color::Red)),
            Span::styled(
                format!("  (path {})", path.join(".")),
                Style::new().fg(Color::DarkGray),
            ),
        ]));
    }
    if !errors.is_empty() {
        lines.push(Line::from(""));
    }
    let data = response.get("data").cloned().unwrap_or(Json::Null);
    let pretty = serde_json::to_string_pretty(&data).unwrap_or_default();
    for line in pretty.lines() {
        let trimmed = line.trim_start();
        let is_failed = failed
            .iter()
            .any(|peer| trimmed.starts_with(&format!("\"{peer}\":")));
        let style = if is_failed {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else if trimmed.starts_with('"') && trimmed.contains("\":") {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new()
        };
        lines.push(Line::styled(line.to_owned(), style));
    }
    (title, lines)
}
