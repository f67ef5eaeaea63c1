//! Who we are on the network: what the protocol layer needs to build, sign and check messages
//! as one participant (a flow), and nothing of what the participant does with them.

use super::context::TimeLimits;
use super::onboarding::{EncryptionKey, EncryptionPublicKey};
use super::registry::RegistrySource;
use super::signing::PrivateKey;
use super::subscribe::Registration;

/// One network participant: its identity, its key, and how it trusts what it receives.
pub struct Participant {
    pub subscriber_id: String,
    /// Without a trailing slash.
    pub subscriber_uri: String,
    /// The registry's unique key id of `signing_key`.
    pub key_id: Option<String>,
    /// Signs outgoing messages; None: they go unsigned (only when verification is off).
    pub signing_key: Option<PrivateKey>,
    /// The key that takes over signing from `signing_key` (key rotation).
    pub next_key: Option<NextKey>,
    /// Whether received messages must carry valid signatures.
    pub verify_signatures: bool,
    /// How far a received signature's `created` may be ahead of this clock, seconds.
    pub signature_skew: i64,
    /// `expires - created` of the signatures we make, seconds.
    pub signature_validity: i64,
    /// Longest `expires - created` of a received signature, seconds.
    pub max_signature_lifetime: i64,
    /// Bounds on a received message's `timestamp` and `ttl`.
    pub time_limits: TimeLimits,
    /// Where other subscribers' keys and URLs are looked up.
    pub registry: Option<RegistrySource>,
    /// What answers the registry's `on_subscribe` challenge and signs the site verification
    /// page.
    pub onboarding: Onboarding,
    /// What `subscribe` sends to the registry (a subscription and a registry URL given).
    pub registration: Option<Registration>,
}

/// A signing key published next to the current one, signing from `sign_from` on.
#[derive(Debug, Clone)]
pub struct NextKey {
    /// Its unique key id in the registry.
    pub key_id: String,
    pub signing_key: PrivateKey,
    /// From when it signs; None: not yet.
    pub sign_from: Option<jiff::Timestamp>,
}

impl Participant {
    /// The key id and key that sign at `now` (unix seconds): the next key once its
    /// `sign_from` has come, else the current one; None when messages go unsigned. Asked at
    /// every signature, so the switch needs no restart.
    pub fn signer_at(&self, now: i64) -> Option<(&str, &PrivateKey)> {
        let switched = self
            .next_key
            .as_ref()
            .filter(|next| next.sign_from.is_some_and(|from| from.as_second() <= now));
        match switched {
            Some(next) => Some((next.key_id.as_str(), &next.signing_key)),
            None => Some((self.key_id.as_deref()?, self.signing_key.as_ref()?)),
        }
    }
}

/// The keys and ids that prove to a registry who we are, each optional: the endpoints that
/// need a missing one answer with a clear error.
#[derive(Debug, Clone, Default)]
pub struct Onboarding {
    /// Our X25519 encryption key.
    pub encryption_key: Option<EncryptionKey>,
    /// The registry's X25519 encryption public key its challenges are encrypted with.
    pub registry_encryption_key: Option<EncryptionPublicKey>,
    /// The `request_id` of our subscription, signed on the site verification page.
    pub request_id: Option<String>,
}

/// A provider for unit tests: `lab.example`, signing with a fresh key `k1`, 60 s signatures,
/// no registry, no onboarding and no registration.
#[cfg(test)]
pub(crate) fn test_lab() -> Participant {
    Participant {
        subscriber_id: "lab.example".into(),
        subscriber_uri: "https://lab.example".into(),
        key_id: Some("k1".into()),
        signing_key: Some(PrivateKey::generate().expect("a key")),
        next_key: None,
        verify_signatures: true,
        signature_skew: 5,
        signature_validity: 60,
        max_signature_lifetime: 3600,
        time_limits: TimeLimits {
            max_ttl: std::time::Duration::from_secs(60),
            skew: std::time::Duration::from_secs(5),
        },
        registry: None,
        onboarding: Onboarding::default(),
        registration: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(next_from: Option<i64>) -> Participant {
        Participant {
            next_key: Some(NextKey {
                key_id: "k2".into(),
                signing_key: PrivateKey::generate().unwrap(),
                sign_from: next_from.map(|s| jiff::Timestamp::from_second(s).unwrap()),
            }),
            ..test_lab()
        }
    }

    #[test]
    fn the_next_key_signs_from_its_time_on() {
        let at = 1_800_000_000;
        let signer = |p: &Participant, now| p.signer_at(now).map(|(id, _)| id.to_string());
        let not_yet = lab(None);
        assert_eq!(signer(&not_yet, at).as_deref(), Some("k1"));
        let scheduled = lab(Some(at));
        assert_eq!(signer(&scheduled, at - 1).as_deref(), Some("k1"));
        assert_eq!(signer(&scheduled, at).as_deref(), Some("k2"));
        let mut unsigned = lab(None);
        unsigned.signing_key = None;
        assert_eq!(signer(&unsigned, at), None);
    }
}
