//! ed25519 checks of the messages that arrive together, verified as one batch: a batch of n
//! signatures costs about 0.7 (n = 4), 0.6 (n = 8) and 0.5 (n = 16 and more) of n single checks.
//!
//! No timer and no task of its own: a check queues itself and lets the runtime run the other
//! ready tasks once (each request ready to be checked queues its own meanwhile); then whoever
//! runs first takes everything queued and checks it. A lone request is checked alone, after
//! one turn of the scheduler. A batch that fails is checked again one signature at a time, so
//! a bad signature is refused alone and costs its batch one more pass.
//!
//! A batch passes exactly when each of its signatures passes a single check, except for
//! signatures a key's own holder builds to differ (`R` with a small-order component or in a
//! non-canonical encoding): such a signature may pass in a batch and fail alone. Nobody can
//! sign that way for a key they do not hold.

use std::sync::{Mutex, MutexGuard};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use tokio::sync::oneshot;

use super::signing::SigningString;

/// Signatures in one batch at most: past 64 the saving per signature hardly grows.
const MAX_BATCH: usize = 64;
/// Checks queued at most; past it a check is made alone at once (the queue cannot hold more
/// than the requests in flight, so this only bounds a pathological burst).
const MAX_QUEUED: usize = 4096;

struct Pending {
    message: SigningString,
    signature: Signature,
    key: VerifyingKey,
    done: oneshot::Sender<bool>,
}

static QUEUE: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

fn queue() -> MutexGuard<'static, Vec<Pending>> {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `signature` is `key`'s over `message`, checked together with the other checks
/// queued at the same time.
pub(crate) async fn verify(
    message: SigningString,
    signature: Signature,
    key: VerifyingKey,
) -> bool {
    let (done, mut answer) = oneshot::channel();
    {
        let mut queued = queue();
        if queued.len() >= MAX_QUEUED {
            drop(queued);
            return key.verify(message.as_bytes(), &signature).is_ok();
        }
        queued.push(Pending {
            message,
            signature,
            key,
            done,
        });
    }
    tokio::task::yield_now().await;
    loop {
        match answer.try_recv() {
            Ok(valid) => return valid,
            // Only if a check panicked: nothing vouches for the signature.
            Err(oneshot::error::TryRecvError::Closed) => return false,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch: Vec<Pending> = {
            let mut queued = queue();
            let n = queued.len().min(MAX_BATCH);
            queued.drain(..n).collect()
        };
        if batch.is_empty() {
            // Ours is being checked by whoever took it, in one go: the answer is on its way.
            break;
        }
        check(batch);
    }
    answer.await.unwrap_or(false)
}

/// Checks `batch` and sends every check its answer.
fn check(batch: Vec<Pending>) {
    crate::telemetry::signatures_verified_together(batch.len());
    let single = |p: &Pending| p.key.verify(p.message.as_bytes(), &p.signature).is_ok();
    if batch.len() == 1 {
        for p in batch {
            let valid = single(&p);
            let _ = p.done.send(valid);
        }
        return;
    }
    let messages: Vec<&[u8]> = batch.iter().map(|p| p.message.as_bytes()).collect();
    let signatures: Vec<Signature> = batch.iter().map(|p| p.signature).collect();
    let keys: Vec<VerifyingKey> = batch.iter().map(|p| p.key).collect();
    let all_valid = ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    drop(messages);
    for p in batch {
        let valid = all_valid || single(&p);
        let _ = p.done.send(valid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beckn::signing::PrivateKey;

    fn signed(key: &PrivateKey, body: &str) -> (SigningString, Signature) {
        let message = SigningString::new(1, 2, body.as_bytes());
        let signature = key.sign_raw(message.as_bytes());
        (message, signature)
    }

    /// Checks made at the same moment are batched, and one bad signature among them is
    /// refused alone while the others pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_signature_in_a_batch_is_refused_alone() {
        let key = PrivateKey::generate().unwrap();
        let public = key.public_key().verifying_key();
        let mut checks = Vec::new();
        for i in 0..32 {
            let (message, mut signature) = signed(&key, &format!("body {i}"));
            let bad = i % 7 == 3;
            if bad {
                let mut bytes = signature.to_bytes();
                bytes[5] ^= 1;
                signature = Signature::from_bytes(&bytes);
            }
            checks.push((bad, tokio::spawn(verify(message, signature, public))));
        }
        for (bad, check) in checks {
            assert_eq!(check.await.unwrap(), !bad);
        }
    }

    #[tokio::test]
    async fn a_lone_check_is_answered() {
        let key = PrivateKey::generate().unwrap();
        let (message, signature) = signed(&key, "alone");
        assert!(verify(message, signature, key.public_key().verifying_key()).await);
        let other = PrivateKey::generate().unwrap().public_key().verifying_key();
        let (message, signature) = signed(&key, "alone");
        assert!(!verify(message, signature, other).await);
    }
}
