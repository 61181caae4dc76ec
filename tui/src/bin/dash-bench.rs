//! `dash-bench`: frame time of the peers view with 10,000 peers.
//!
//! `cargo run --release -p plexus-tui --bin dash-bench [PEERS] [FRAMES]`
//! renders the peers view into a 160x45 `TestBackend` and prints the median
//! frame time (the target is 16 ms or less).

use std::time::{Duration, Instant};

use plexus_core::wire::{Peer, PeerId};
use plexus_core::{PeerName, PeerUri, Timestamp};
use plexus_tui::app::dispatch;
use plexus_tui::model::{Config, Model};
use plexus_tui::update::Message;
use plexus_tui::view::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// Frame time of plexus-dash's peers view, rendered into a 160x45 test backend.
#[derive(clap::Parser, Debug)]
#[command(name = "dash-bench")]
struct Args {
    /// Peers in the table.
    #[arg(default_value_t = 10_000)]
    peers: usize,
    /// Frames to render and time.
    #[arg(default_value_t = 200)]
    frames: usize,
}

fn main() -> anyhow::Result<()> {
    let Args { peers, frames } = clap::Parser::parse();
    let now = Timestamp::from_millis(1_700_000_000_000);
    let mut model = Model::new(
        Config {
            genesis: "http://127.0.0.1:8111".into(),
            peer: None,
            peer_timeout: Duration::from_secs(30),
            demo: None,
        },
        now,
    );
    let list = (0..peers)
        .map(|i| {
            Ok(Peer {
                id: PeerId(uuid_from(i)),
                peer_name: PeerName::new(format!("Peer{i:05}"))?,
                peer_uri: PeerUri::new(format!(
                    "http://10.{}.{}.{}:8081",
                    i / 65536 % 256,
                    i / 256 % 256,
                    i % 256
                ))?,
                last_contact_at: Timestamp::from_millis(
                    now.as_millis() - (i as u64 * 7919) % 30_000,
                ),
                schema_hash: format!(
                    "{:064x}",
                    (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                )
                .into(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    dispatch(
        &mut model,
        Message::Snapshot {
            version: 1,
            peers: list,
            source: plexus_tui::model::Source::Watch,
        },
    );
    dispatch(&mut model, Message::Resize(160, 45));
    let mut terminal = Terminal::new(TestBackend::new(160, 45))?;
    let mut times = Vec::with_capacity(frames);
    for frame in 0..frames {
        // Move the selection and the clock like a user and the tick would.
        dispatch(
            &mut model,
            Message::Move(if frame % 2 == 0 { 37 } else { -11 }),
        );
        dispatch(
            &mut model,
            Message::Tick(now + Duration::from_millis(frame as u64 * 10)),
        );
        let start = Instant::now();
        terminal.draw(|f| view(&model, f))?;
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let p95 = times[times.len() * 95 / 100];
    println!(
        "peers view, {peers} peers, 160x45, {frames} frames: median {:.3} ms, p95 {:.3} ms, max {:.3} ms (target <= 16 ms)",
        ms(median),
        ms(p95),
        ms(times[times.len() - 1])
    );
    // The whole update + draw of a tick that re-sorts (sort by state).
    dispatch(&mut model, Message::CycleSort);
    for _ in 0..3 {
        dispatch(&mut model, Message::CycleSort);
    }
    let mut times = Vec::with_capacity(frames);
    for frame in 0..frames.min(50) {
        let start = Instant::now();
        dispatch(
            &mut model,
            Message::Tick(now + Duration::from_millis(frame as u64 * 1000)),
        );
        terminal.draw(|f| view(&model, f))?;
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "tick (re-sort by state) + draw, {peers} peers: median {:.3} ms",
        ms(times[times.len() / 2])
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn uuid_from(i: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(i as u128 + 1)
}
