//! The runtime: terminal, input thread, network tasks, tick, and the loop
//! that feeds messages to `update` and draws with `view`.

use std::time::Duration;

use anyhow::Context;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::model::{Config, Model};
use crate::net;
use crate::update::{Message, set_query_text, update};
use crate::view::view;

/// How often the screen is redrawn when nothing happens (ping ages move on).
pub const TICK: Duration = Duration::from_secs(1);

/// Restores the terminal when dropped: on return, on error, on panic.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(std::io::stdout(), DisableMouseCapture);
        ratatui::restore();
    }
}

/// Applies `message` and every message it leads to.
pub fn dispatch(model: &mut Model, message: Message) {
    let mut next = Some(message);
    while let Some(message) = next {
        next = update(model, message);
    }
}

/// Runs the dashboard with `client` (see [`net::client`]) until the user quits.
pub async fn run(
    config: Config,
    initial_query: Option<String>,
    client: reqwest::Client,
) -> anyhow::Result<()> {
    let (tx, mut rx) = unbounded_channel();
    let mut model = Model::new(config.clone(), net::now());
    if let Some(query) = initial_query {
        set_query_text(&mut model, query);
    }
    tokio::spawn(net::watch_genesis(
        client.clone(),
        config.genesis.clone(),
        tx.clone(),
    ));
    spawn_input(tx.clone());
    spawn_signals(tx.clone());

    let mut terminal = ratatui::init();
    let _guard = TerminalGuard;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(std::io::stdout(), DisableMouseCapture);
        previous(info);
    }));
    execute!(std::io::stdout(), EnableMouseCapture).context("enabling the mouse")?;
    let size = terminal.size().context("reading the terminal size")?;
    dispatch(&mut model, Message::Resize(size.width, size.height));

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        terminal
            .draw(|frame| view(&model, frame))
            .context("drawing")?;
        // Sleep until something happens: a message or the tick.
        let message = tokio::select! {
            message = rx.recv() => match message {
                Some(message) => message,
                None => break,
            },
            _ = tick.tick() => Message::Tick(net::now()),
        };
        dispatch(&mut model, message);
        // Apply whatever else is already waiting before drawing again.
        while let Ok(message) = rx.try_recv() {
            dispatch(&mut model, message);
        }
        for command in model.drain_commands() {
            net::perform(&client, command, &tx);
        }
        if model.quit {
            break;
        }
    }
    Ok(())
}

/// Reads terminal events on a thread of their own (crossterm blocks).
fn spawn_input(tx: UnboundedSender<Message>) {
    std::thread::spawn(move || {
        loop {
            let message = match event::read() {
                Ok(Event::Key(key)) => Message::Key(key),
                Ok(Event::Mouse(mouse)) => Message::Mouse(mouse),
                Ok(Event::Resize(w, h)) => Message::Resize(w, h),
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(%e, "reading terminal events");
                    break;
                }
            };
            if tx.send(message).is_err() {
                break;
            }
        }
    });
}

/// SIGTERM, SIGHUP and SIGINT quit cleanly (so a devnet is stopped).
fn spawn_signals(tx: UnboundedSender<Message>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(Message::Quit);
    });
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(Message::Quit);
        }
    });
}
