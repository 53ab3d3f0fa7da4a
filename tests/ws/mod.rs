//! A WebSocket client for the multiplexed protocol, built on the `protocol` crate, for
//! integration tests. Include with `mod common; mod ws;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use opsgate_protocol::{decode_data, decode_server, encode_data, ServerFrame, SUBPROTOCOL};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::Server;

/// What the server sent.
#[derive(Debug, Clone)]
pub enum Event {
    Control(ServerFrame),
    Data(u32, Vec<u8>),
}

/// One socket.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Data received per channel and not yet taken by a test.
    pub buffered: HashMap<u32, Vec<u8>>,
    /// Control frames received and not yet taken.
    pub controls: Vec<ServerFrame>,
    /// Acknowledge data as it arrives (a browser would).
    pub auto_ack: bool,
}

/// The `ws://…/ws` URL of a server.
pub fn ws_url(server: &Server) -> String {
    server.url("/ws").replacen("http", "ws", 1)
}

/// The upgrade request a browser tab sends: the subprotocol, the login cookie if given,
/// and `origin` (the server's own by default).
pub fn upgrade_request(
    server: &Server,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = ws_url(server).into_client_request().expect("request");
    let h = req.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Some(c) = cookie {
        h.insert("cookie", HeaderValue::from_str(c).expect("cookie"));
    }
    let own = server.origin();
    h.insert(
        "origin",
        HeaderValue::from_str(origin.unwrap_or(&own)).expect("origin"),
    );
    req
}

/// Tries to open a socket; returns the HTTP status on refusal.
pub async fn try_connect(
    server: &Server,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, u16> {
    let req = upgrade_request(server, cookie, origin);
    match tokio_tungstenite::connect_async(req).await {
        Ok((stream, _)) => Ok(Ws {
            stream,
            buffered: HashMap::new(),
            controls: Vec::new(),
            auto_ack: true,
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Opens a socket with a login cookie; panics on refusal.
pub async fn connect(server: &Server, cookie: &str) -> Ws {
    try_connect(server, Some(cookie), None)
        .await
        .unwrap_or_else(|s| panic!("websocket refused with {s}"))
}

const WAIT: Duration = Duration::from_secs(20);

impl Ws {
    pub async fn send_json(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, t: &str) {
        self.stream
            .send(Message::Text(t.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.stream
            .send(Message::Binary(b.into()))
            .await
            .expect("send");
    }

    pub async fn input(&mut self, ch: u32, data: &[u8]) {
        self.send_binary(encode_data(ch, data)).await;
    }

    pub async fn open_pty(&mut self, ch: u32, program: &str) {
        self.send_json(
            json!({"type":"open","ch":ch,"kind":"pty","program":program,"cols":80,"rows":24}),
        )
        .await;
    }

    pub async fn ack(&mut self, ch: u32, bytes: usize) {
        self.send_json(json!({"type":"ack","ch":ch,"bytes":bytes}))
            .await;
    }

    /// Next event within `wait`, or None on timeout / socket end.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        loop {
            let msg = tokio::time::timeout(wait, self.stream.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(t) => {
                    let f = decode_server(t.as_str()).expect("server frame decodes");
                    return Some(Event::Control(f));
                }
                Message::Binary(b) => {
                    let (ch, p) = decode_data(&b).expect("data frame decodes");
                    if self.auto_ack {
                        self.ack(ch, p.len()).await;
                    }
                    return Some(Event::Data(ch, p.to_vec()));
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Pumps events into the buffers until `done` says so; panics after `WAIT`.
    pub async fn pump_until(&mut self, mut done: impl FnMut(&Ws) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Event::Control(f)) => self.controls.push(f),
                Some(Event::Data(ch, d)) => self.buffered.entry(ch).or_default().extend(d),
                None => panic!(
                    "timed out or socket ended; controls so far: {:?}; data: {:?}",
                    self.controls,
                    self.buffered
                        .iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(v).to_string()))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for a control frame matching `pred`, and removes it.
    pub async fn expect_control(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        self.pump_until(|w| w.controls.iter().any(&pred)).await;
        let i = self.controls.iter().position(&pred).expect("present");
        self.controls.remove(i)
    }

    /// Waits for `opened` on `ch`; returns the channel id.
    pub async fn expect_opened(&mut self, ch: u32) -> String {
        match self
            .expect_control(|f| matches!(f, ServerFrame::Opened { ch: c, .. } | ServerFrame::Error { ch: Some(c), .. } if *c == ch))
            .await
        {
            ServerFrame::Opened { id, .. } => id,
            other => panic!("expected opened on {ch}, got {other:?}"),
        }
    }

    /// Sends `attach` for channel `id` on `ch` at `offset` and waits for the answer:
    /// `opened`'s `(offset, lost)`, or the error that refused it.
    pub async fn attach(
        &mut self,
        ch: u32,
        id: &str,
        offset: u64,
    ) -> Result<(Option<u64>, Option<u64>), ServerFrame> {
        self.send_json(json!({"type":"attach","ch":ch,"id":id,"offset":offset}))
            .await;
        match self
            .expect_control(|f| matches!(f, ServerFrame::Opened { ch: c, .. } | ServerFrame::Error { ch: Some(c), .. } if *c == ch))
            .await
        {
            ServerFrame::Opened { offset, lost, .. } => Ok((offset, lost)),
            other => Err(other),
        }
    }

    /// Waits for an `error` with `code` (on `ch` if given).
    pub async fn expect_error(&mut self, ch: Option<u32>, code: &str) -> String {
        match self
            .expect_control(
                |f| matches!(f, ServerFrame::Error { ch: c, code: k, .. } if *c == ch && k == code),
            )
            .await
        {
            ServerFrame::Error { message, .. } => message,
            _ => unreachable!(),
        }
    }

    /// Waits until `ch`'s output contains `needle`; returns all of it so far (drained).
    pub async fn expect_output(&mut self, ch: u32, needle: &str) -> String {
        self.pump_until(|w| {
            w.buffered
                .get(&ch)
                .is_some_and(|d| String::from_utf8_lossy(d).contains(needle))
        })
        .await;
        let d = self.buffered.remove(&ch).unwrap_or_default();
        String::from_utf8_lossy(&d).to_string()
    }

    /// Reads whatever arrives for `quiet`, returning how many data bytes came per channel.
    pub async fn drain_for(&mut self, quiet: Duration) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        while let Some(ev) = self.next_event(quiet).await {
            match ev {
                Event::Data(ch, d) => {
                    *counts.entry(ch).or_insert(0) += d.len();
                    self.buffered.entry(ch).or_default().extend(d);
                }
                Event::Control(f) => self.controls.push(f),
            }
        }
        counts
    }

    /// Opens an `ssh` channel to `127.0.0.1:port` as `user` with credential `cred`,
    /// trusting the host key if asked; returns the channel id.
    pub async fn open_ssh_trusting(
        &mut self,
        ch: u32,
        port: u16,
        user: &str,
        cred: &str,
    ) -> String {
        self.send_json(
            json!({"type":"open","ch":ch,"kind":"ssh","host":"127.0.0.1","port":port,
            "username":user,"credential_id":cred,"cols":80,"rows":24}),
        )
        .await;
        let first = self
            .expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: c, .. } | ServerFrame::Opened { ch: c, .. } | ServerFrame::Error { ch: Some(c), .. } if *c == ch))
            .await;
        match first {
            ServerFrame::Hostkey { .. } => {
                self.send_json(json!({"type":"hostkey_accept","ch":ch}))
                    .await;
                self.expect_opened(ch).await
            }
            ServerFrame::Opened { id, .. } => id,
            other => panic!("ssh open failed: {other:?}"),
        }
    }

    /// Sends `data` on `ch` in frames of `frame` bytes, as a client that obeys the input
    /// window does: never more than `window` bytes unacknowledged by `input_ack`; the rest
    /// waits (while output keeps being read and acked). Returns when all is sent.
    pub async fn send_obeying_window(&mut self, ch: u32, data: &[u8], frame: usize, window: u64) {
        self.send_obeying_window_from(ch, data, frame, window, 0)
            .await
    }

    /// As [`Ws::send_obeying_window`], with `in_flight` bytes already unacknowledged
    /// (`input_pending` of `opened`, or `pending` of `input_resumed`).
    pub async fn send_obeying_window_from(
        &mut self,
        ch: u32,
        data: &[u8],
        frame: usize,
        window: u64,
        in_flight: u64,
    ) {
        let mut in_flight = in_flight;
        for piece in data.chunks(frame) {
            while in_flight + piece.len() as u64 > window {
                match self.next_event(WAIT).await {
                    Some(Event::Control(ServerFrame::InputAck { ch: c, bytes })) if c == ch => {
                        assert!(bytes <= in_flight, "input_ack for more than was sent");
                        in_flight -= bytes;
                    }
                    Some(Event::Control(f)) => self.controls.push(f),
                    Some(Event::Data(c, d)) => self.buffered.entry(c).or_default().extend(d),
                    None => panic!(
                        "no input_ack within {WAIT:?}; controls: {:?}",
                        self.controls
                    ),
                }
            }
            self.input(ch, piece).await;
            in_flight += piece.len() as u64;
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
