//! `GET /api/channels`: the live channels of the caller's login, so a reloaded page or a
//! second tab can find its terminals and `attach` them even when browser storage was
//! cleared. Read-only: it looks at the registry's handles and their [`ChannelStatus`]
//! atomics and never talks to a channel task.
//!
//! [`ChannelStatus`]: super::channel::ChannelStatus

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::Mux;
use crate::app::App;
use crate::auth::CurrentUser;

/// One channel as the listing shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ChannelInfo {
    /// The id to `attach` with.
    pub id: String,
    /// `ssh` or `pty`.
    #[schema(value_type = String, example = "pty")]
    pub kind: &'static str,
    /// What it runs: `saved session <id>`, `user@host:port` or `program <name>`.
    pub target: String,
    /// Bound to a socket right now (another tab, or this one before a reload).
    pub attached: bool,
    /// Output bytes produced so far; `attach` offsets are counted in the same bytes.
    pub bytes_out: u64,
    /// The program or shell ended (the channel stays until its output is acknowledged
    /// or the grace period passes).
    pub exited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl Mux {
    /// The live channels of one login, sorted by id so the listing is stable between
    /// calls.
    pub fn channels_of(&self, login_id: &str) -> Vec<ChannelInfo> {
        let mut out: Vec<ChannelInfo> = self
            .inner
            .channels
            .iter()
            .filter(|h| &*h.login_id == login_id)
            .map(|h| {
                let st = &h.shared.status;
                let exit = st.exit();
                ChannelInfo {
                    id: h.id.to_string(),
                    kind: h.kind,
                    target: h.target.to_string(),
                    attached: st.attached(),
                    bytes_out: st.produced(),
                    exited: exit.is_some(),
                    exit_code: exit.flatten(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// `GET /api/channels` (any logged-in user; only that login's channels).
#[utoipa::path(get, path = "/api/channels", tag = "system",
    responses((status = 200, description = "The live channels of the caller's login, by id", body = Vec<ChannelInfo>)))]
pub async fn list_channels(
    State(app): State<Arc<App>>,
    user: CurrentUser,
) -> Json<Vec<ChannelInfo>> {
    Json(app.mux.channels_of(&user.login.login_id))
}
