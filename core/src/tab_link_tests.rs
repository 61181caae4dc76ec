#![allow(clippy::unwrap_used)]

use super::*;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn config(max_attempts: u32) -> LinkConfig {
    LinkConfig {
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(2),
        max_attempts,
        seed: 7,
    }
}

fn events(link: &mut TabLink) -> Vec<LinkEvent> {
    std::iter::from_fn(|| link.poll_event()).collect()
}

fn actions(link: &mut TabLink) -> Vec<LinkAction> {
    std::iter::from_fn(|| link.poll_action()).collect()
}

/// Advances to the link's next wake-up and returns that instant; asserts
/// that it asks for a connect exactly then and not a millisecond before.
fn until_connect(link: &mut TabLink) -> Timestamp {
    let at = link.poll_timeout().expect("a reconnect is scheduled");
    link.handle_timeout(at - Duration::from_millis(1));
    assert_eq!(actions(link), vec![], "nothing before {at}");
    link.handle_timeout(at);
    assert_eq!(actions(link), vec![LinkAction::Connect]);
    assert_eq!(link.poll_timeout(), None, "no timer while connecting");
    at
}

#[test]
fn a_dropped_socket_is_reconnected_after_the_first_backoff() {
    let mut link = TabLink::new(config(3), T0);
    assert!(link.is_connected());
    assert_eq!(link.poll_timeout(), None);
    let dropped = T0 + Duration::from_secs(60);
    link.handle_closed(dropped);
    assert!(!link.is_connected());
    let retry_at = link.poll_timeout().unwrap();
    // The first delay is exactly retry_min (backoff of attempt 0).
    assert_eq!(retry_at, dropped + Duration::from_millis(100));
    assert_eq!(
        events(&mut link),
        vec![LinkEvent::Retrying {
            attempts: 0,
            retry_at
        }]
    );
    let at = until_connect(&mut link);
    link.handle_welcomed(at + Duration::from_millis(5));
    assert_eq!(
        link.state(),
        &LinkState::Connected {
            since: at + Duration::from_millis(5),
            attempts: 1
        }
    );
    assert_eq!(
        events(&mut link),
        vec![LinkEvent::Reconnected { attempts: 1 }]
    );
}

#[test]
fn failed_reconnects_back_off_within_bounds_then_give_up() {
    let cfg = config(5);
    let mut link = TabLink::new(cfg.clone(), T0);
    let mut now = T0 + Duration::from_secs(10);
    link.handle_closed(now);
    let mut delays = Vec::new();
    for attempt in 0..5u32 {
        let at = link.poll_timeout().unwrap();
        let delay = at.saturating_since(now);
        let ceiling = (cfg.retry_min * 2u32.pow(attempt)).min(cfg.retry_max);
        assert!(
            delay >= cfg.retry_min && delay <= ceiling,
            "attempt {attempt}: {delay:?} not in [{:?}, {ceiling:?}]",
            cfg.retry_min
        );
        delays.push(delay);
        now = until_connect(&mut link);
        now = now + Duration::from_millis(50);
        link.handle_failed(now);
    }
    assert_eq!(link.state(), &LinkState::GaveUp);
    assert_eq!(link.poll_timeout(), None);
    let last = events(&mut link).pop();
    assert_eq!(last, Some(LinkEvent::GaveUp { attempts: 5 }));
    // Nothing wakes it again.
    link.handle_timeout(now + Duration::from_secs(3600));
    link.handle_closed(now + Duration::from_secs(3600));
    assert_eq!(actions(&mut link), vec![]);
    assert_eq!(link.poll_timeout(), None);
    // Capped: no delay beyond retry_max however many attempts.
    assert!(delays.iter().all(|d| *d <= cfg.retry_max), "{delays:?}");
}

#[test]
fn connections_that_drop_before_they_are_stable_count_as_attempts() {
    let mut link = TabLink::new(config(3), T0);
    let mut now = T0 + Duration::from_secs(5);
    link.handle_closed(now);
    // Welcomed each time, but replaced again a moment later (the same key
    // open in another tab): bounded, not forever.
    for attempts in 1..=3u32 {
        now = until_connect(&mut link);
        link.handle_welcomed(now);
        assert_eq!(
            link.state(),
            &LinkState::Connected {
                since: now,
                attempts
            }
        );
        now = now + Duration::from_millis(300);
        link.handle_closed(now);
    }
    assert_eq!(link.state(), &LinkState::GaveUp);
    assert_eq!(
        events(&mut link).pop(),
        Some(LinkEvent::GaveUp { attempts: 3 })
    );
}

#[test]
fn a_stable_connection_forgets_the_earlier_reconnects() {
    let mut link = TabLink::new(config(2), T0);
    let mut now = T0 + Duration::from_secs(5);
    link.handle_closed(now);
    now = until_connect(&mut link);
    link.handle_failed(now);
    now = until_connect(&mut link);
    link.handle_welcomed(now);
    assert_eq!(
        link.state(),
        &LinkState::Connected {
            since: now,
            attempts: 2
        }
    );
    // Up for retry_max: stable. The next drop starts from attempt 0 again
    // (with 2 attempts spent, an unstable link would give up here).
    now = now + Duration::from_secs(2);
    link.handle_closed(now);
    assert_eq!(
        link.state(),
        &LinkState::Waiting {
            attempts: 0,
            retry_at: now + Duration::from_millis(100)
        }
    );
}

#[test]
fn zero_attempts_never_reconnects() {
    let mut link = TabLink::new(config(0), T0);
    link.handle_closed(T0 + Duration::from_secs(1));
    assert_eq!(link.state(), &LinkState::GaveUp);
    assert_eq!(events(&mut link), vec![LinkEvent::GaveUp { attempts: 0 }]);
    assert_eq!(link.poll_timeout(), None);
}

#[test]
fn a_stopped_tab_never_reconnects_and_stray_reports_change_nothing() {
    let mut link = TabLink::new(config(3), T0);
    // Reports that do not fit the state are ignored.
    link.handle_welcomed(T0);
    link.handle_failed(T0);
    assert_eq!(
        link.state(),
        &LinkState::Connected {
            since: T0,
            attempts: 0
        }
    );
    assert_eq!(events(&mut link), vec![]);
    link.handle_closed(T0 + Duration::from_secs(1));
    let _ = events(&mut link);
    // A second close (of the same socket, seen twice) changes nothing.
    let waiting = link.state().clone();
    link.handle_closed(T0 + Duration::from_secs(1));
    assert_eq!(link.state(), &waiting);
    link.handle_stop();
    assert_eq!(link.state(), &LinkState::Stopped);
    assert_eq!(link.poll_timeout(), None);
    link.handle_timeout(T0 + Duration::from_secs(3600));
    assert_eq!(actions(&mut link), vec![]);
    link.handle_closed(T0 + Duration::from_secs(3600));
    assert_eq!(link.state(), &LinkState::Stopped);
}

#[test]
fn the_schedule_is_a_function_of_the_seed() {
    let schedule = |seed: u64| {
        let mut link = TabLink::new(LinkConfig { seed, ..config(6) }, T0);
        link.handle_closed(T0);
        let mut at = Vec::new();
        for _ in 0..5 {
            let now = until_connect(&mut link);
            at.push(now);
            link.handle_failed(now);
        }
        at
    };
    assert_eq!(schedule(1), schedule(1));
    assert_ne!(schedule(1), schedule(2));
}
