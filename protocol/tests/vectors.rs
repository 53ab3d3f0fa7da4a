//! Every frame in `vectors/` decodes and re-encodes byte for byte.

use opsgate_protocol::*;
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read vectors");
    serde_json::from_str(&text).expect("vector file is JSON")
}

#[test]
fn client_control_frames_round_trip() {
    let vectors = load("client.json");
    assert!(vectors.len() >= 10);
    for v in vectors {
        let text = v["json"].as_str().expect("json field");
        let frame = decode_client(text).unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        assert_eq!(encode_json(&frame), text, "{}", v["name"]);
    }
}

#[test]
fn server_control_frames_round_trip() {
    let vectors = load("server.json");
    assert!(vectors.len() >= 7);
    for v in vectors {
        let text = v["json"].as_str().expect("json field");
        let frame = decode_server(text).unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        assert_eq!(encode_json(&frame), text, "{}", v["name"]);
    }
}

#[test]
fn data_frames_round_trip() {
    for v in load("data.json") {
        let ch = v["ch"].as_u64().expect("ch") as u32;
        let payload = hex::decode(v["payload_hex"].as_str().expect("payload")).expect("hex");
        let frame = hex::decode(v["frame_hex"].as_str().expect("frame")).expect("hex");
        assert_eq!(encode_data(ch, &payload), frame, "{}", v["name"]);
        let (c, p) = decode_data(&frame).expect("decode");
        assert_eq!((c, p), (ch, payload.as_slice()));
    }
}

#[test]
fn invalid_frames_are_refused() {
    for v in load("invalid.json") {
        let name = &v["name"];
        if let Some(text) = v["json"].as_str() {
            assert!(decode_client(text).is_err(), "{name} should not decode");
        } else {
            let bytes = hex::decode(v["frame_hex"].as_str().expect("frame")).expect("hex");
            assert!(decode_data(&bytes).is_err(), "{name} should not decode");
        }
    }
}
