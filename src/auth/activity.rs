//! Terminal activity keeps a login alive: sockets report input and acks, and the mux's
//! login sweeper pushes the stored login's idle clock forward (at most once a minute per
//! login, one redb write) or learns that the login expired.

use std::str::FromStr;

use time::OffsetDateTime;
use tower_sessions::session::Id;
use tower_sessions::SessionStore;

use super::{LoginInfo, RedbSessionStore, LOGIN_KEY};
use crate::store::Store;

/// What the store says about a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginState {
    /// Still valid; `seen_at` is the last activity it recorded (REST or socket).
    Alive { seen_at: i64 },
    /// Logged out, or expired by either timeout.
    Gone,
}

fn login_of(record: &tower_sessions::session::Record) -> Option<LoginInfo> {
    let v = record.data.get(LOGIN_KEY)?;
    serde_json::from_value(v.clone()).ok()
}

/// Reads a login's state. A store error counts as alive: a transient failure must not
/// log everyone out.
pub async fn login_state(store: &Store, session_id: &str) -> LoginState {
    let Ok(id) = Id::from_str(session_id) else {
        return LoginState::Gone;
    };
    match RedbSessionStore::new(store.clone()).load(&id).await {
        Ok(Some(r)) => match login_of(&r) {
            Some(l) => LoginState::Alive { seen_at: l.seen_at },
            None => LoginState::Gone,
        },
        Ok(None) => LoginState::Gone,
        Err(e) => {
            tracing::warn!(error = %e, "login lookup failed; keeping the login");
            LoginState::Alive {
                seen_at: crate::store::now(),
            }
        }
    }
}

/// Records socket activity at `seen_at` on a login and extends its idle expiry.
pub async fn refresh_login(
    store: &Store,
    session_id: &str,
    seen_at: i64,
    idle_timeout_secs: u64,
) -> LoginState {
    let Ok(id) = Id::from_str(session_id) else {
        return LoginState::Gone;
    };
    let sessions = RedbSessionStore::new(store.clone());
    let mut record = match sessions.load(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return LoginState::Gone,
        Err(e) => {
            tracing::warn!(error = %e, "login lookup failed; keeping the login");
            return LoginState::Alive { seen_at };
        }
    };
    let Some(mut login) = login_of(&record) else {
        return LoginState::Gone;
    };
    if seen_at > login.seen_at {
        login.seen_at = seen_at;
        if let Ok(v) = serde_json::to_value(&login) {
            record.data.insert(LOGIN_KEY.to_string(), v);
        }
        record.expiry_date =
            OffsetDateTime::now_utc() + time::Duration::seconds(idle_timeout_secs as i64);
        if let Err(e) = sessions.save(&record).await {
            tracing::warn!(error = %e, "could not record terminal activity on the login");
        }
    }
    LoginState::Alive {
        seen_at: login.seen_at,
    }
}
