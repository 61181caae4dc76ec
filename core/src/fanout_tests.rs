//! The fan-out's decisions in virtual time: the bounds per query and per
//! peer, the deadlines, cancellations, and what an answer means.

use super::*;
use crate::network::{merge, plan};
use crate::schema::Schema;

fn peer(name: &str) -> PeerName {
    PeerName::new(name).expect("name")
}

fn ask(name: &str) -> Ask {
    Ask {
        peer: peer(name),
        query: format!("{{ q0: Local {{ Get {{ Things {{ City {{ name }} }} }} }} }} # {name}"),
    }
}

fn t(ms: u64) -> Timestamp {
    Timestamp(ms)
}

const SECOND: Duration = Duration::from_secs(1);

fn drain(f: &mut Fanout) -> Vec<Transmit> {
    std::iter::from_fn(|| f.poll_transmit()).collect()
}

fn events(f: &mut Fanout) -> Vec<Done> {
    std::iter::from_fn(|| f.poll_event()).collect()
}

fn ok() -> &'static [u8] {
    br#"{"data": {"q0": {"Get": {"Things": {"City": []}}}}}"#
}

#[test]
fn one_query_sends_at_most_per_query_at_once_and_the_rest_as_answers_come() {
    let mut f = Fanout::new(FanoutLimits {
        per_query: 2,
        per_peer: 8,
    });
    let q = f.start(vec![ask("A"), ask("B"), ask("C"), ask("D")], SECOND, t(0));
    let sent = drain(&mut f);
    let peers: Vec<&str> = sent.iter().map(|s| s.peer.as_str()).collect();
    assert_eq!(peers, ["A", "B"]);
    assert!(sent.iter().all(|s| s.deadline == t(1000)));
    assert!(sent[0].body().contains("\"query\""));
    f.handle_reply(sent[1].id, 200, ok(), t(10));
    let next = drain(&mut f);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].peer.as_str(), "C");
    assert_eq!(next[0].id, AskId { query: q, index: 2 });
    f.handle_failure(sent[0].id, "connection refused".into(), t(20));
    let last = drain(&mut f);
    assert_eq!(last[0].peer.as_str(), "D");
    assert!(events(&mut f).is_empty(), "two asks still out");
    f.handle_reply(next[0].id, 200, ok(), t(30));
    f.handle_reply(last[0].id, 503, b"busy", t(40));
    let done = events(&mut f);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].query, q);
    assert!(matches!(&done[0].outcomes[0], Outcome::Failed(r) if r == "connection refused"));
    assert!(matches!(&done[0].outcomes[1], Outcome::Answered(_)));
    assert!(matches!(&done[0].outcomes[2], Outcome::Answered(_)));
    assert!(matches!(&done[0].outcomes[3], Outcome::Failed(r) if r.contains("503")));
    assert_eq!(f.queries(), 0);
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn a_hanging_peer_gets_at_most_per_peer_requests_across_queries_and_others_are_not_held() {
    let mut f = Fanout::new(FanoutLimits {
        per_query: 8,
        per_peer: 2,
    });
    let hang = peer("Hang");
    let queries: Vec<QueryId> = (0..5)
        .map(|i| f.start(vec![ask("Hang"), ask(&format!("B{i}"))], SECOND, t(i)))
        .collect();
    let sent = drain(&mut f);
    let to_hang = sent.iter().filter(|s| s.peer == hang).count();
    let to_b = sent
        .iter()
        .filter(|s| s.peer.as_str().starts_with('B'))
        .count();
    assert_eq!((to_hang, to_b), (2, 5), "{sent:?}");
    assert_eq!(f.in_flight(&hang), 2);
    // The others answer every query at once; each query still waits on Hang.
    for s in sent.iter().filter(|s| s.peer.as_str().starts_with('B')) {
        f.handle_reply(s.id, 200, ok(), t(50));
    }
    assert!(events(&mut f).is_empty());
    assert!(drain(&mut f).is_empty(), "Hang's bound is full");
    // Nothing is due before the first query's deadline.
    assert_eq!(f.poll_timeout(), Some(t(1000)));
    f.handle_timeout(t(999));
    assert!(events(&mut f).is_empty());
    // The first query times out: its request to Hang ends, and the oldest
    // waiting query's ask takes its place.
    f.handle_timeout(t(1000));
    let done = events(&mut f);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].query, queries[0]);
    assert_eq!(
        done[0].outcomes[0],
        Outcome::TimedOut {
            after: SECOND,
            sent: true
        }
    );
    assert_eq!(
        done[0].outcomes[0].reason().as_deref(),
        Some("no answer within 1s")
    );
    let next = drain(&mut f);
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].id,
        AskId {
            query: queries[2],
            index: 0
        }
    );
    assert_eq!(next[0].deadline, t(1002), "its own query's deadline");
    // A late answer of the timed-out request changes nothing.
    f.handle_reply(sent[0].id, 200, ok(), t(1000));
    assert_eq!(f.in_flight(&hang), 2);
    // The rest time out at their deadlines; those that never got a slot say so.
    f.handle_timeout(t(1004));
    let done = events(&mut f);
    assert_eq!(done.len(), 4);
    assert_eq!(
        done.iter()
            .map(|d| d.outcomes[0].clone())
            .filter(|o| matches!(o, Outcome::TimedOut { sent: false, .. }))
            .count(),
        2
    );
    assert!(
        done[3].outcomes[0]
            .reason()
            .is_some_and(|r| r.contains("not asked"))
    );
    assert_eq!(f.in_flight(&hang), 0);
    assert_eq!(f.queries(), 0);
}

#[test]
fn a_cancelled_query_holds_its_peers_bound_until_its_requests_end() {
    let mut f = Fanout::new(FanoutLimits {
        per_query: 8,
        per_peer: 1,
    });
    let gone = f.start(vec![ask("A"), ask("B")], SECOND, t(0));
    let first = drain(&mut f);
    assert_eq!(first.len(), 2);
    let waits = f.start(vec![ask("A")], SECOND, t(5));
    let waits_b = f.start(vec![ask("B")], SECOND, t(5));
    assert!(drain(&mut f).is_empty());
    f.cancel(gone);
    assert!(drain(&mut f).is_empty(), "A and B are still being asked");
    assert_eq!(f.poll_timeout(), Some(t(1000)));
    // A's request ends: the waiting query gets it.
    f.handle_failure(first[0].id, "reset".into(), t(100));
    let next = drain(&mut f);
    assert_eq!(
        next.iter().map(|s| s.id).collect::<Vec<_>>(),
        [AskId {
            query: waits,
            index: 0
        }]
    );
    // B's request never ends: its deadline frees it.
    f.handle_timeout(t(1000));
    let next = drain(&mut f);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id.query, waits_b);
    assert!(events(&mut f).is_empty(), "a cancelled query has no Done");
}

#[test]
fn a_query_without_asks_is_over_at_once_and_answers_are_decoded_once() {
    let mut f = Fanout::new(FanoutLimits::default());
    let q = f.start(Vec::new(), SECOND, t(0));
    assert_eq!(
        events(&mut f),
        [Done {
            query: q,
            outcomes: vec![]
        }]
    );
    assert!(matches!(decode(200, ok()), Outcome::Answered(_)));
    assert!(matches!(decode(200, b"not json"), Outcome::Failed(r) if r.contains("not JSON")));
    assert!(matches!(decode(200, b"[1]"), Outcome::Failed(r) if r.contains("not an object")));
    assert!(matches!(decode(404, ok()), Outcome::Failed(r) if r == "it answered 404"));
    assert_eq!(peer_timeout(None, SECOND, 5 * SECOND), SECOND);
    assert_eq!(
        peer_timeout(Some(250), SECOND, 5 * SECOND),
        Duration::from_millis(250)
    );
    assert_eq!(peer_timeout(Some(60_000), SECOND, 5 * SECOND), 5 * SECOND);
}

#[test]
fn missing_and_malformed_answers_merge_as_errors_at_their_peers_paths() {
    let schema: Schema = serde_json::from_value(json!({"things": {"classes": [
        {"class": "City", "properties": [{"name": "name", "dataType": ["string"]}]}]}}))
    .expect("schema");
    let schemas: BTreeMap<PeerName, Schema> = ["Good", "Empty", "Garbage", "Slow"]
        .into_iter()
        .map(|n| (peer(n), schema.clone()))
        .collect();
    let q = "{ Network(networkTimeout: 300) { Get { Good { Things { City { name } } } Empty { Things { City { name } } } Garbage { Things { City { name } } } Slow { Things { City { name } } } } } }";
    let plan = plan(q, None, &serde_json::Map::new(), &schemas).expect("valid");
    let mut f = Fanout::new(FanoutLimits::default());
    let timeout = peer_timeout(plan.timeout, 5 * SECOND, 10 * SECOND);
    f.start(plan.asks(), timeout, t(0));
    let sent = drain(&mut f);
    assert_eq!(sent.len(), 4);
    f.handle_reply(
        sent[0].id,
        200,
        br#"{"data": {"q0": {"Get": {"Things": {"City": [{"name": "Delft"}]}}}}}"#,
        t(10),
    );
    f.handle_reply(sent[1].id, 200, br#"{"data": {}}"#, t(10));
    f.handle_reply(sent[2].id, 200, b"<html>", t(10));
    f.handle_timeout(t(300));
    let done = events(&mut f).pop().expect("done");
    let merged = merge(&plan, done.outcomes);
    let errors: Vec<(String, &str)> = merged
        .errors
        .iter()
        .map(|e| (e.path[2].to_string(), e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].0.contains("Empty") && errors[0].1.contains("without this part"));
    assert!(errors[1].0.contains("Garbage") && errors[1].1.contains("not JSON"));
    assert!(errors[2].0.contains("Slow") && errors[2].1.contains("no answer within 300ms"));
    let response = merged.into_response();
    assert_eq!(
        response["data"]["Network"]["Get"]["Good"]["Things"]["City"][0]["name"],
        "Delft"
    );
    assert_eq!(response["data"]["Network"]["Get"]["Empty"], Json::Null);
}
