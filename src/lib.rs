//! opsgate: a WebSocket-first realtime gateway for network operators.
//!
//! Modules by capability; each has a small public surface. See the README's
//! architecture section for how they fit.
#![forbid(unsafe_code)]

pub mod app;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod inventory;
pub mod jobs;
pub mod metrics;
pub mod mux;
pub mod netbox;
pub mod pty;
pub mod source;
pub mod ssh;
pub mod stats;
pub mod store;
pub mod tls;
pub mod tools;
pub mod web;
pub mod workspace;
