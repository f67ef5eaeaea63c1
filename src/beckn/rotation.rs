//! What a key rotation publishes: the registry entry of a participant's next signing key, and
//! until when its current key must stay in the registry. One place computes both, so whatever
//! publishes the entry (an operator pasting it, a registry file, a subscribe call) publishes the
//! same thing.

use super::registry::{Subscriber, SubscriberType};
use super::signing::PublicKey;

/// How a participant appears in its registry, besides its key.
#[derive(Debug, Clone)]
pub struct Listing {
    pub subscriber_id: String,
    pub kind: SubscriberType,
    pub url: String,
    pub domain: String,
    pub city: Option<String>,
    pub country: Option<String>,
}

/// The registry entry of `key_id` with `public`, usable from `valid_from` and with no end yet
/// (the current key's entry is the one that ends).
pub fn next_entry(
    listing: &Listing,
    key_id: &str,
    public: &PublicKey,
    valid_from: jiff::Timestamp,
) -> Subscriber {
    Subscriber {
        subscriber_id: listing.subscriber_id.clone(),
        kind: listing.kind,
        url: listing.url.clone(),
        domain: listing.domain.clone(),
        city: listing.city.clone(),
        country: listing.country.clone(),
        unique_key_id: key_id.to_string(),
        signing_public_key: public.to_base64(),
        encr_public_key: None,
        valid_from: Some(valid_from),
        valid_until: None,
        status: "SUBSCRIBED".into(),
    }
}

/// The earliest time the current key's entry may end: the last signature it makes (just
/// before `sign_from`) must stay checkable for its whole validity, plus the clock skew peers
/// tolerate. Callbacks are signed again at every attempt, so no retry carries the old key
/// after `sign_from`.
pub fn retire_after(
    sign_from: jiff::Timestamp,
    signature_validity_secs: i64,
    skew_secs: i64,
) -> jiff::Timestamp {
    let margin = jiff::SignedDuration::from_secs(
        signature_validity_secs
            .saturating_add(skew_secs)
            .clamp(0, 86_400 * 365),
    );
    sign_from.saturating_add(margin).unwrap_or(sign_from)
}

/// `entry` as an item of a registry file's `subscribers:` list, each line indented by
/// `indent` spaces; strings are written JSON-quoted, which YAML reads as they are.
pub fn entry_yaml(entry: &Subscriber, indent: usize) -> String {
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let kind = match entry.kind {
        SubscriberType::Bap => "BAP",
        SubscriberType::Bpp => "BPP",
        SubscriberType::Bg => "BG",
    };
    let mut lines = vec![
        format!("subscriber_id: {}", quote(&entry.subscriber_id)),
        format!("type: {kind}"),
        format!("url: {}", quote(&entry.url)),
        format!("domain: {}", quote(&entry.domain)),
    ];
    if let Some(city) = &entry.city {
        lines.push(format!("city: {}", quote(city)));
    }
    if let Some(country) = &entry.country {
        lines.push(format!("country: {}", quote(country)));
    }
    lines.push(format!("unique_key_id: {}", quote(&entry.unique_key_id)));
    lines.push(format!(
        "signing_public_key: {}",
        quote(&entry.signing_public_key)
    ));
    if let Some(from) = entry.valid_from {
        lines.push(format!("valid_from: {from}"));
    }
    if let Some(until) = entry.valid_until {
        lines.push(format!("valid_until: {until}"));
    }
    lines.push(format!("status: {}", entry.status));
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let lead = if i == 0 { "- " } else { "  " };
        out.push_str(&format!("{pad}{lead}{line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beckn::registry::RegistryFile;
    use crate::beckn::signing::PrivateKey;

    fn listing() -> Listing {
        Listing {
            subscriber_id: "lab.example".into(),
            kind: SubscriberType::Bpp,
            url: "https://lab.example/beckn".into(),
            domain: "agri.soil".into(),
            city: Some("std:011".into()),
            country: None,
        }
    }

    #[test]
    fn the_entry_written_reads_back_as_the_entry() {
        let key = PrivateKey::generate().unwrap();
        let from: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let entry = next_entry(&listing(), "lab-key-2", &key.public_key(), from);
        let text = format!("subscribers:\n{}", entry_yaml(&entry, 2));
        let (doc, problems) =
            crate::config::yaml::parse_literal(std::path::Path::new("r.yaml"), &text).unwrap();
        assert!(problems.is_empty());
        let file: RegistryFile = serde_json::from_value(doc.value).unwrap();
        assert_eq!(file.subscribers, vec![entry]);
    }

    #[test]
    fn the_old_key_outlives_its_last_signature() {
        let from: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let until = retire_after(from, 60, 5);
        assert_eq!(until.as_second() - from.as_second(), 65);
        assert_eq!(retire_after(from, i64::MAX, i64::MAX), {
            from.saturating_add(jiff::SignedDuration::from_secs(86_400 * 365))
                .unwrap()
        });
    }
}
