//! Trust stage of the message path: who may send us a message, and how ours are signed.
//!
//! The pipeline calls [`Trust::verify_inbound`] on the raw bytes before parsing and
//! [`Trust::sign_outbound`] on every callback body. This version performs no signature
//! checks (the adapter warns at start-up); Beckn HTTP signatures plug in here.

use axum::http::HeaderMap;

use super::ack::Rejection;

/// Headers to add to an outgoing message.
pub type OutboundHeaders = Vec<(String, String)>;

pub trait Trust: Send + Sync {
    /// Checks the sender of `body` (raw bytes as received).
    fn verify_inbound(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection>;
    /// Headers (`Authorization`) that authenticate an outgoing `body`.
    fn sign_outbound(&self, body: &[u8]) -> OutboundHeaders;
}

/// Accepts every sender and signs nothing: for local networks only.
pub struct Unverified;

impl Trust for Unverified {
    fn verify_inbound(&self, _headers: &HeaderMap, _body: &[u8]) -> Result<(), Rejection> {
        Ok(())
    }

    fn sign_outbound(&self, _body: &[u8]) -> OutboundHeaders {
        Vec::new()
    }
}
