//! The multiplexed WebSocket: sockets, channels, flow control and resume.

use std::sync::{Arc, Weak};

use axum::response::IntoResponse;

use crate::app::App;
use crate::config::MuxConfig;
use crate::metrics::Metrics;

/// Registry of sockets and channels.
pub struct Mux {
    _cfg: MuxConfig,
    _metrics: Arc<Metrics>,
    _app: Weak<App>,
}

impl Mux {
    pub fn new(cfg: MuxConfig, metrics: Arc<Metrics>, app: Weak<App>) -> Self {
        Mux { _cfg: cfg, _metrics: metrics, _app: app }
    }
    pub fn close_login(&self, _login_id: &str, _reason: &str) {}
    pub fn close_user(&self, _username: &str, _reason: &str) {}
    pub fn shutdown(&self) {}
}

pub async fn ws_handler() -> impl IntoResponse {
    crate::error::ApiError::not_found("route")
}
