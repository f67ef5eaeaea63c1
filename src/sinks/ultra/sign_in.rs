//! Signing a Flipkart user in: the single-use grant token the Ultra SDK gave the buyer's app is
//! exchanged for the user's identity token, and their mobile number and email are fetched. The
//! buyer app's client API offers this (`roles::bap::ultra`) and keeps the user under a session
//! id; later calls that carry `X-Ultra-Session: <session>` tie their transaction to the user
//! (so its orders are reported to Ultra) and give request templates `user.mobile` and
//! `user.email`.

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::UltraConnection;
use super::api::{self, UltraError};
use crate::store::SinkUser;

/// The header naming a signed-in user on client API calls.
pub const SESSION_HEADER: &str = "x-ultra-session";

/// Exchanges `grant` with Ultra and gives the user under a new session id, not yet kept,
/// signed in at `now` (unix ms). `flow` names the flow for log lines.
pub async fn sign_in(
    http: &reqwest::Client,
    conn: &UltraConnection,
    flow: &str,
    grant: &str,
    now: i64,
) -> Result<SinkUser, UltraError> {
    let tokens = api::exchange_grant(http, conn, grant).await?;
    // The grant is spent by now: a contact Ultra cannot give is missing, not a failed sign-in.
    let contact = match api::fetch_contact(http, conn, &tokens.access_token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%flow, connection = %conn.name, error = %e, "the user's contact could not be fetched; signed in without it");
            api::Contact::default()
        }
    };
    Ok(SinkUser {
        session: uuid::Uuid::new_v4().to_string(),
        connection: conn.name.clone(),
        identity_token: tokens.identity_token,
        mobile: contact.mobile,
        email: contact.email,
        created_at: now,
    })
}

/// The session a call names with [`SESSION_HEADER`], if it names one.
pub fn session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The user as templates see it (never the identity token: it stays with the adapter).
pub fn user_value(user: &SinkUser) -> Value {
    json!({"mobile": user.mobile, "email": user.email})
}
