//! Ultra's OMS as an outbox destination: an update is rebuilt from its order event with the
//! mapping and connection of now, POSTed to `/3/oms` with a fresh-enough secureToken within the
//! connection's limit of calls in flight, and its answer read by Ultra's codes (23 is a
//! success).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::oms::{OmsAnswer, classify};
use super::report::{Resend, resend};
use crate::compile::CompiledSet;
use crate::delivery::kinds::{Answer, Destination, Request, Verdict};
use crate::delivery::{DeliverySettings, Outbox};
use crate::store::OutboxItem;

/// The longest pause between two attempts at an OMS update: they have days to arrive, and a
/// rate-limited Ultra is better asked less often.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Sends OMS updates (outbox kind [`super::OUTBOX_KIND`]).
pub struct OmsDestination;

impl Destination for OmsDestination {
    fn kinds(&self) -> &[&'static str] {
        &[super::OUTBOX_KIND]
    }

    fn max_backoff(&self, _settings: &DeliverySettings) -> Duration {
        MAX_BACKOFF
    }

    fn prepare<'a>(
        &'a self,
        outbox: &'a Outbox,
        set: &'a Arc<CompiledSet>,
        item: &'a OutboxItem,
    ) -> BoxFuture<'a, Result<Request, Verdict>> {
        Box::pin(async move {
            let Some(conn) = set.sinks.ultra(&item.flow).cloned() else {
                return Err(Verdict::Transient(
                    format!("Ultra connection `{}` is not loaded", item.flow),
                    None,
                ));
            };
            // Rebuilt from its order event: a retry carries the current mapping and settings.
            let body = match resend(outbox, set, item).await {
                Resend::Send(body) => body,
                Resend::Done(what) => {
                    tracing::info!(flow = %item.flow, id = item.id, %what, "the order event was mapped again and queued");
                    return Err(Verdict::Delivered);
                }
                Resend::Refused(why) => return Err(Verdict::Refused(why)),
                Resend::Later(why) => return Err(Verdict::Transient(why, None)),
            };
            // The token is minted once a slot is ours: one minted before a long wait could
            // expire.
            let turn = conn.limiter.clone().acquire_owned().await.ok();
            let token = match super::secure_token_at(&conn, outbox.clock.now().as_second()) {
                Ok(t) => t,
                Err(e) => return Err(Verdict::Transient(e.to_string(), None)),
            };
            Ok(Request {
                url: conn.oms_endpoint(),
                headers: Vec::new(),
                secret_headers: vec![("secureToken".into(), token)],
                body,
                timeout: conn.timeout,
                turn,
            })
        })
    }

    fn classify(&self, item: &OutboxItem, answer: Answer<'_>) -> Verdict {
        let (result, verdict) = match answer {
            Answer::Unreachable { error, .. } => ("unreachable", Verdict::Transient(error, None)),
            Answer::Http {
                status,
                headers,
                body,
                now,
            } => {
                let asked = crate::backend::retry_after::asked(status, headers, now);
                match classify(status, body) {
                    OmsAnswer::Accepted => ("accepted", Verdict::Delivered),
                    OmsAnswer::AlreadyAccepted => ("repeat", Verdict::Delivered),
                    OmsAnswer::Retry(why) => ("retry", Verdict::Transient(why, asked)),
                    OmsAnswer::Refused(why) => ("refused", Verdict::Refused(why)),
                }
            }
        };
        crate::telemetry::sink_called(super::SINK, &item.flow, "oms", result);
        verdict
    }
}
