//! Property tests (bounded fuzzing) of the frame decoders: no input panics them, and
//! every frame the encoder makes decodes back to itself.

use opsgate_protocol::*;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // Bounded so the test command stays fast; raise with PROPTEST_CASES for longer runs.
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4096),
        ..ProptestConfig::default()
    }
}

fn frame_text() -> impl Strategy<Value = String> {
    // Mostly JSON-shaped text so the decoder's deeper paths are exercised.
    let words = prop::sample::select(vec![
        "type",
        "open",
        "ch",
        "kind",
        "pty",
        "ssh",
        "ack",
        "bytes",
        "attach",
        "id",
        "offset",
        "resize",
        "cols",
        "rows",
        "close",
        "hostkey_accept",
        "program",
        "tool",
        "params",
        "-1",
        "4294967296",
        "1e400",
        "null",
        "true",
        "\"",
        "{",
        "}",
        ":",
        ",",
        "[",
        "]",
        "\\u0000",
        "\u{1F600}",
    ]);
    prop_oneof![
        ".*",
        prop::collection::vec(words, 0..24).prop_map(|w| w.concat()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn binary_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        match decode_data(&bytes) {
            Ok((ch, payload)) => {
                prop_assert_eq!(encode_data(ch, payload), bytes);
            }
            Err(_) => prop_assert!(bytes.len() < DATA_HEADER_LEN || bytes[0] != FRAME_DATA),
        }
    }

    #[test]
    fn text_decoder_never_panics(text in frame_text()) {
        if let Ok(frame) = decode_client(&text) {
            // Whatever decodes re-encodes to something that decodes to the same frame.
            let again = decode_client(&encode_json(&frame)).expect("re-decode");
            prop_assert_eq!(again, frame);
        }
        let _ = decode_server(&text);
    }

    #[test]
    fn data_frames_round_trip(ch in any::<u32>(), payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let f = encode_data(ch, &payload);
        let (c, p) = decode_data(&f).expect("decode");
        prop_assert_eq!(c, ch);
        prop_assert_eq!(p, payload.as_slice());
    }

    #[test]
    fn control_frames_round_trip(ch in any::<u32>(), n in any::<u64>(), cols in any::<u16>(), rows in any::<u16>(), id in "[a-f0-9]{0,40}") {
        for f in [
            ClientFrame::Ack { ch, bytes: n },
            ClientFrame::Resize { ch, cols, rows },
            ClientFrame::Attach { ch, id: id.clone(), offset: n },
            ClientFrame::Close { ch },
        ] {
            prop_assert_eq!(decode_client(&encode_json(&f)).expect("decode"), f);
        }
    }
}
