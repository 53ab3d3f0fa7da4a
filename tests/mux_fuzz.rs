//! Bounded fuzzing of a live socket: thousands of random and half-valid frames, after
//! which the socket and its real channel still work.

mod common;
mod ws;

use common::{Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use serde_json::json;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, so a failure reproduces.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PIECES: &[&str] = &[
    r#"{"type":"open","ch":"#,
    r#"{"type":"ack","ch":"#,
    r#"{"type":"attach","ch":"#,
    r#"{"type":"resize","ch":"#,
    r#"{"type":"close","ch":"#,
    r#","kind":"pty","program":"cat""#,
    r#","kind":"tool""#,
    r#","bytes":"#,
    r#","id":"x","offset":"#,
    r#","cols":0,"rows":65535"#,
    "}",
    "{",
    "\"",
    "-1",
    "4294967295",
    "99999999999999999999",
    "null",
    "[]",
    "\u{0}",
    "é",
];

#[tokio::test]
async fn random_frames_do_not_break_the_socket() {
    let s = Server::start(
        ServerOptions::default()
            .config("[pty.programs]\ncat = [\"cat\"]\n[mux]\nmax_channels_per_login = 64\n"),
    )
    .await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let mut w = ws::connect(&s, admin.cookie.as_deref().expect("cookie")).await;
    w.open_pty(1, "cat").await;
    w.expect_opened(1).await;
    let mut rng = Rng(0x0005_eed0_f0b5_9a7e);
    for _ in 0..3000 {
        match rng.below(3) {
            0 => {
                let n = rng.below(8) as usize;
                let mut t = String::new();
                for _ in 0..n {
                    t.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
                    t.push_str(&(rng.below(5) + 2).to_string());
                }
                w.send_text(&t).await;
            }
            1 => {
                let len = rng.below(24) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                // Never address the channel under test: its input must stay clean.
                if b.len() >= 5 && b[1..5] == [0, 0, 0, 1] {
                    b[4] = 2;
                }
                w.send_binary(b).await;
            }
            _ => {
                let ch = rng.below(6) + 2;
                w.send_json(json!({"type":"close","ch":ch})).await;
            }
        }
    }
    // Drain the flood of error frames, then prove channel 1 still works.
    w.input(1, b"survived-fuzz\n").await;
    let out = w.expect_output(1, "survived-fuzz").await;
    assert!(out.contains("survived-fuzz"));
    assert!(
        s.logs().matches("panicked").count() == 0,
        "gateway panicked: {}",
        s.logs()
    );
}
