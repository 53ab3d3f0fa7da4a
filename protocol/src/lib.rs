//! The opsgate wire protocol (`opsgate.v1`): JSON control frames and binary data frames.
//! `PROTOCOL.md` beside this crate is the normative text; this crate is its one
//! implementation in Rust, shared by the gateway, the load tester and the tests.
#![forbid(unsafe_code)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The WebSocket subprotocol name.
pub const SUBPROTOCOL: &str = "opsgate.v1";
/// Byte 0 of a data frame.
pub const FRAME_DATA: u8 = 0x01;
/// Length of a data frame's header: kind (1) + channel (4, big endian).
pub const DATA_HEADER_LEN: usize = 5;

/// A control frame from the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Open channel `ch` (chosen by the client, unique on this socket).
    Open(Open),
    /// Change a terminal's size.
    Resize { ch: u32, cols: u16, rows: u16 },
    /// The client has consumed (rendered) `bytes` more bytes of `ch`'s output.
    Ack { ch: u32, bytes: u64 },
    /// Close a channel; its process or SSH session ends.
    Close { ch: u32 },
    /// Bind an existing (detached) channel `id` to number `ch` on this socket and replay
    /// its output from byte `offset`.
    Attach { ch: u32, id: String, offset: u64 },
    /// Trust the host key the server asked about on `ch`.
    HostkeyAccept { ch: u32 },
    /// Refuse the host key the server asked about on `ch`.
    HostkeyReject { ch: u32 },
    /// After an `input_overrun` error: the client knows what was lost; accept input on
    /// `ch` again.
    InputResume { ch: u32 },
}

/// `open`: the channel number and what to open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Open {
    pub ch: u32,
    #[serde(flatten)]
    pub target: OpenTarget,
}

/// What an `open` asks for, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpenTarget {
    /// An SSH terminal: a saved session, or an ad-hoc host with a credential.
    Ssh {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential_id: Option<String>,
        cols: u16,
        rows: u16,
    },
    /// A local program from the admin's allow-list, in a PTY.
    Pty {
        program: String,
        cols: u16,
        rows: u16,
    },
    /// A registered tool run with checked parameters.
    /// Either `tool` and `params` (start a run) or `execution_id` (follow a run: its
    /// stored output, then live).
    Tool {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        tool: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        params: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution_id: Option<String>,
    },
    /// Follow a job's progress.
    Job { job_id: String },
    /// System metrics every `interval_ms`.
    Stats { interval_ms: u64 },
}

impl OpenTarget {
    /// The `kind` word.
    pub fn kind(&self) -> &'static str {
        match self {
            OpenTarget::Ssh { .. } => "ssh",
            OpenTarget::Pty { .. } => "pty",
            OpenTarget::Tool { .. } => "tool",
            OpenTarget::Job { .. } => "job",
            OpenTarget::Stats { .. } => "stats",
        }
    }
}

/// Whether a host key is new or differs from the trusted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostkeyStatus {
    Unknown,
    Changed,
}

/// A control frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The channel is open (or attached). `offset` is the byte offset of the first data
    /// frame that follows; `lost` counts bytes before it that are gone (attach only).
    Opened {
        ch: u32,
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lost: Option<u64>,
        /// Input bytes the client may have unconsumed at once (its input window).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_window: Option<u64>,
        /// After `attach`: input bytes sent earlier (by another socket) that the program
        /// has not consumed yet; they count against the window until acknowledged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_pending: Option<u64>,
        /// After `attach`: input bytes the channel has taken from clients in total. Input
        /// sent on a socket that died may never have arrived; the client resends what it
        /// sent beyond this count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_received: Option<u64>,
    },
    /// The program consumed `bytes` more bytes of the client's input (incremental).
    InputAck { ch: u32, bytes: u64 },
    /// Answer to `input_resume`: input is accepted again; `pending` bytes accepted
    /// before the overrun are not consumed yet and count against the window.
    InputResumed { ch: u32, pending: u64 },
    /// The SSH server's key needs the user's decision.
    Hostkey {
        ch: u32,
        algorithm: String,
        fingerprint: String,
        status: HostkeyStatus,
    },
    /// A job or tool event; fields besides `ch` depend on the channel kind.
    Progress {
        ch: u32,
        #[serde(flatten)]
        event: serde_json::Map<String, serde_json::Value>,
    },
    /// The program or remote shell ended.
    Exit {
        ch: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
    },
    /// Something went wrong; with `ch`, about that channel only.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ch: Option<u32>,
        code: String,
        message: String,
    },
    /// The channel is gone; its number may be reused.
    Closed {
        ch: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// The JSON Schema (draft 2020-12) of every control frame a client may send, generated
/// from [`ClientFrame`] so it cannot drift from the decoder. `protocol/schema/` holds the
/// committed copy; a test fails when the two differ.
pub fn client_frame_schema() -> serde_json::Value {
    schemars::schema_for!(ClientFrame).to_value()
}

/// The JSON Schema (draft 2020-12) of every control frame the gateway sends, generated
/// from [`ServerFrame`].
pub fn server_frame_schema() -> serde_json::Value {
    schemars::schema_for!(ServerFrame).to_value()
}

/// Error codes carried by `error` frames.
pub mod codes {
    pub const MALFORMED_FRAME: &str = "malformed_frame";
    pub const UNKNOWN_CHANNEL: &str = "unknown_channel";
    pub const CHANNEL_IN_USE: &str = "channel_in_use";
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_ALLOWED: &str = "program_not_allowed";
    pub const UNSUPPORTED_KIND: &str = "unsupported_kind";
    pub const INVALID_OPEN: &str = "invalid_open";
    pub const LIMIT_REACHED: &str = "limit_reached";
    pub const SPAWN_FAILED: &str = "spawn_failed";
    pub const NOT_FOUND: &str = "not_found";
    pub const ATTACH_REFUSED: &str = "attach_refused";
    pub const CHANNEL_GONE: &str = "channel_gone";
    pub const OUTPUT_LOST: &str = "output_lost";
    pub const INVALID_OFFSET: &str = "invalid_offset";
    pub const INPUT_OVERRUN: &str = "input_overrun";
    pub const INVALID_RESIZE: &str = "invalid_resize";
    pub const CHANNEL_BUSY: &str = "channel_busy";
    pub const SESSION_EXPIRED: &str = "session_expired";
    pub const DNS_FAILED: &str = "dns_failed";
    pub const CONNECT_REFUSED: &str = "connect_refused";
    pub const CONNECT_TIMEOUT: &str = "connect_timeout";
    pub const AUTH_FAILED: &str = "auth_failed";
    pub const HOSTKEY_CHANGED: &str = "hostkey_changed";
    pub const HOSTKEY_REJECTED: &str = "hostkey_rejected";
    /// A job met a host key nobody in its workspace trusted yet (jobs never ask).
    pub const HOSTKEY_UNKNOWN: &str = "hostkey_unknown";
    pub const CHANNEL_FAILED: &str = "channel_failed";
    pub const REMOTE_CLOSED: &str = "remote_closed";
    pub const TARGET_DENIED: &str = "target_denied";
    pub const SHUTTING_DOWN: &str = "shutting_down";
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("data frame shorter than its 5-byte header ({0} bytes)")]
    TooShort(usize),
    #[error("unknown binary frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("malformed control frame: {0}")]
    Json(String),
}

/// Decodes a text (control) frame from the client.
pub fn decode_client(text: &str) -> Result<ClientFrame, FrameError> {
    serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))
}

/// Decodes a text (control) frame from the server.
pub fn decode_server(text: &str) -> Result<ServerFrame, FrameError> {
    serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))
}

/// Encodes a control frame.
pub fn encode_json<T: Serialize>(frame: &T) -> String {
    // Serialising these types cannot fail: no maps with non-string keys, no I/O.
    serde_json::to_string(frame).unwrap_or_default()
}

/// Builds a data frame.
pub fn encode_data(ch: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_HEADER_LEN + payload.len());
    out.push(FRAME_DATA);
    out.extend_from_slice(&ch.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes a data frame header for `ch` into the first 5 bytes of `frame`.
pub fn write_data_header(frame: &mut [u8], ch: u32) {
    if frame.len() >= DATA_HEADER_LEN {
        frame[0] = FRAME_DATA;
        frame[1..DATA_HEADER_LEN].copy_from_slice(&ch.to_be_bytes());
    }
}

/// Splits a data frame into its channel number and payload.
pub fn decode_data(frame: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    if frame.len() < DATA_HEADER_LEN {
        return Err(FrameError::TooShort(frame.len()));
    }
    if frame[0] != FRAME_DATA {
        return Err(FrameError::UnknownKind(frame[0]));
    }
    let ch = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
    Ok((ch, &frame[DATA_HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trip() {
        let f = encode_data(0x0102_0304, b"hi");
        assert_eq!(f, [1, 1, 2, 3, 4, b'h', b'i']);
        assert_eq!(decode_data(&f), Ok((0x0102_0304, &b"hi"[..])));
        assert_eq!(decode_data(&[1, 0, 0]), Err(FrameError::TooShort(3)));
        assert_eq!(
            decode_data(&[9, 0, 0, 0, 1]),
            Err(FrameError::UnknownKind(9))
        );
    }

    #[test]
    fn open_has_flat_kind_fields() {
        let f = decode_client(
            r#"{"type":"open","ch":1,"kind":"pty","program":"htop","cols":120,"rows":40}"#,
        )
        .expect("decode");
        assert_eq!(
            f,
            ClientFrame::Open(Open {
                ch: 1,
                target: OpenTarget::Pty {
                    program: "htop".into(),
                    cols: 120,
                    rows: 40
                }
            })
        );
    }
}
