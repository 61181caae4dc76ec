//! Schemas and objects from any JSON: parse, validate, hash, check objects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_core::schema::{Kind, Schema};

fuzz_target!(|data: &[u8]| {
    let Ok(schema) = serde_json::from_slice::<Schema>(data) else {
        // Still try the bytes as an object against a fixed schema.
        if let Ok(serde_json::Value::Object(values)) = serde_json::from_slice(data) {
            let schema: Schema = serde_json::from_str(
                r#"{"things":{"classes":[{"class":"City","properties":[
                    {"name":"name","dataType":["string"]},{"name":"population","dataType":["int"]},
                    {"name":"founded","dataType":["date"]},{"name":"location","dataType":["geoCoordinates"]},
                    {"name":"inCountry","dataType":["City"]}]}]}}"#,
            )
            .expect("fixed schema");
            let _ = schema.check_object(Kind::Things, "City", &values);
        }
        return;
    };
    let hash = schema.hash();
    assert_eq!(hash.len(), 64);
    if schema.validate().is_ok() {
        let mut rebuilt = Schema::default();
        for (kind, class) in schema.classes() {
            let _ = rebuilt.add_class(kind, class.clone());
        }
    }
});
