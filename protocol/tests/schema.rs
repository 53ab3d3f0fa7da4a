//! The control frames' JSON Schema: generated from the Rust types, committed under
//! `protocol/schema/` for clients in other languages, and checked against the vectors.
//!
//! `OPSGATE_WRITE_SCHEMA=1 cargo test -p opsgate-protocol --test schema` rewrites the
//! committed files after a frame type changed.

use opsgate_protocol::{client_frame_schema, server_frame_schema};
use serde_json::Value;

fn dir() -> String {
    format!("{}/schema", env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read vectors");
    serde_json::from_str(&text).expect("vector file is JSON")
}

/// The committed schema equals the generated one (or is rewritten on request).
fn committed(file: &str, generated: &Value) -> Value {
    let path = format!("{}/{file}", dir());
    let pretty = serde_json::to_string_pretty(generated).expect("schema is JSON") + "\n";
    if std::env::var_os("OPSGATE_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &pretty).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == pretty,
        "{path} is not what the frame types generate; run \
         `OPSGATE_WRITE_SCHEMA=1 cargo test -p opsgate-protocol --test schema` and commit it"
    );
    serde_json::from_str(&on_disk).expect("committed schema is JSON")
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).expect("the schema itself is valid draft 2020-12")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| e.to_string()).collect()
}

#[test]
fn client_frames_match_their_schema() {
    let schema = committed("client-frame.schema.json", &client_frame_schema());
    let v = validator(&schema);
    for vector in load("client.json") {
        let frame: Value =
            serde_json::from_str(vector["json"].as_str().expect("json")).expect("JSON");
        let errs = errors(&v, &frame);
        assert!(errs.is_empty(), "{}: {errs:?}", vector["name"]);
    }
    // What the decoder refuses for its shape, the schema refuses too.
    for vector in load("invalid.json") {
        let Some(text) = vector["json"].as_str() else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        assert!(
            !v.is_valid(&frame),
            "{} should not validate",
            vector["name"]
        );
    }
}

#[test]
fn server_frames_match_their_schema() {
    let schema = committed("server-frame.schema.json", &server_frame_schema());
    let v = validator(&schema);
    for vector in load("server.json") {
        let frame: Value =
            serde_json::from_str(vector["json"].as_str().expect("json")).expect("JSON");
        let errs = errors(&v, &frame);
        assert!(errs.is_empty(), "{}: {errs:?}", vector["name"]);
    }
    let not_a_frame = serde_json::json!({"type": "opened", "ch": 1});
    assert!(
        !v.is_valid(&not_a_frame),
        "an opened frame without id validates"
    );
}
