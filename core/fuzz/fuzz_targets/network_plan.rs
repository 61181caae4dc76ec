//! Network query planning from any text, and merging any answers (to Get,
//! Fetch and Introspect plans): no panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use plexus_core::PeerName;
use plexus_core::fanout::Outcome;
use plexus_core::schema::Schema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schema: Schema = serde_json::from_str(
        r#"{"things":{"classes":[{"class":"City","properties":[
            {"name":"name","dataType":["string"]},{"name":"inCountry","dataType":["Country"]}]},
            {"class":"Country","properties":[{"name":"name","dataType":["string"]}]}]}}"#,
    )
    .expect("fixed schema");
    let schemas = BTreeMap::from([(PeerName::new("PeerB").expect("name"), schema)]);
    let variables = serde_json::Map::new();
    if let Ok(plan) = plexus_core::network::plan(text, None, &variables, &schemas) {
        let answers = plan
            .queries
            .iter()
            .map(|q| Outcome::Failed(q.query.clone()))
            .collect();
        let _ = plexus_core::network::merge(&plan, answers);
    }
    // Half the input as a remote's answer to a fixed plan.
    if let Ok(answer) = serde_json::from_str::<serde_json::Value>(text)
        && let Ok(plan) = plexus_core::network::plan(
            "{ Network { Get { PeerB { Things { City { name } } } } } }",
            None,
            &variables,
            &schemas,
        )
    {
        let _ = plexus_core::network::merge(&plan, vec![Outcome::Answered(answer.clone())]);
        // The same answer for every peer of a Fetch and Introspect (ranked
        // lists, a beacon's field).
        let fixed = r#"{ Network { Fetch { Things(where: {class: {name: "City", certainty: 0.5}}) { beacon certainty }
            Fuzzy(value: "x", certainty: 0.5) { beacon } }
            Introspect { Things(where: [{class: [{name: "City", certainty: 0.5}]}]) { className }
            Beacon(id: "weaviate://PeerB/things/6f9b5a32-8d7b-4c36-9a8e-0b1c2d3e4f50") { className } } } }"#;
        if let Ok(plan) = plexus_core::network::plan(fixed, None, &variables, &schemas) {
            let answers = plan
                .queries
                .iter()
                .map(|_| Outcome::Answered(answer.clone()))
                .collect();
            let _ = plexus_core::network::merge(&plan, answers);
        }
    }
});
