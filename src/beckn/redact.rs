//! Redaction of what must not be stored or logged: signatures, keys, tokens, and the personal
//! data in message bodies (names, phone numbers, emails, addresses, GPS positions, order sinks'
//! identity tokens), masked the same way in payload logs and in the store's message log.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// Headers that carry secrets outright.
const SECRET_HEADERS: [&str; 5] = [
    "cookie",
    "set-cookie",
    "x-api-key",
    "securetoken",
    "proxy-authorization",
];

/// The headers as a JSON object, with signatures reduced to their `keyId` and secrets masked.
pub fn headers_json(headers: &HeaderMap) -> String {
    let mut out = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let text = value.to_str().unwrap_or("<binary>");
        let shown = if name == "authorization" || name == "x-gateway-authorization" {
            signature_summary(text)
        } else if SECRET_HEADERS.contains(&name) {
            "***".to_string()
        } else {
            text.to_string()
        };
        out.insert(name.to_string(), Value::String(shown));
    }
    Value::Object(out).to_string()
}

/// `Signature keyId="a|k|ed25519",...,signature="…"` -> `Signature keyId="a|k|ed25519" (signature redacted)`;
/// any other credential -> `***`.
pub fn signature_summary(value: &str) -> String {
    match value.split(',').find_map(|p| {
        p.trim()
            .strip_prefix("Signature ")
            .or(Some(p.trim()))
            .filter(|p| p.starts_with("keyId="))
    }) {
        Some(key_id) => format!("Signature {key_id} (signature redacted)"),
        None => "***".to_string(),
    }
}

/// The personal fields masked by default: field names anywhere, and `parent.field` paths.
pub const DEFAULT_PERSONAL_FIELDS: &str = "phone,email,callback_phone,mobile,mobileNumber,address,gps,identityToken,identity_token,person.name,billing.name";

/// What a masked value becomes.
const MASK: &[u8] = b"\"***\"";

/// Body fields holding personal data: a bare name (`phone`) matches that key at any depth; a
/// dotted path (`person.name`) matches a key whose enclosing objects carry the keys before it
/// (arrays in between do not count), so `person.name` masks a customer's name but not an
/// item's `descriptor.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalFields {
    paths: Vec<Vec<String>>,
    /// Every key named by some path, once.
    keys: Vec<String>,
    /// The lengths (below 64) and first bytes of those keys: most keys of a body are told
    /// apart by these alone.
    lengths: u64,
    firsts: [bool; 256],
}

impl PersonalFields {
    /// From names and dotted paths; empty entries are ignored (an empty list masks nothing).
    pub fn new<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> Self {
        let paths: Vec<Vec<String>> = fields
            .into_iter()
            .map(|f| {
                f.as_ref()
                    .split('.')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter(|p| !p.is_empty())
            .collect();
        let mut keys: Vec<String> = paths.iter().flatten().cloned().collect();
        keys.sort();
        keys.dedup();
        let mut lengths = 0u64;
        let mut firsts = [false; 256];
        for k in &keys {
            lengths |= 1u64.checked_shl(k.len() as u32).unwrap_or(0);
            firsts[k.as_bytes()[0] as usize] = true;
        }
        PersonalFields {
            paths,
            keys,
            lengths,
            firsts,
        }
    }

    /// Whether `word` may be one of the keys (a quick test before comparing).
    fn may_be_key(&self, word: &[u8]) -> bool {
        word.len() < 64 && self.lengths & (1 << word.len()) != 0 && self.firsts[word[0] as usize]
    }

    /// [`DEFAULT_PERSONAL_FIELDS`].
    pub fn defaults() -> Self {
        PersonalFields::new(DEFAULT_PERSONAL_FIELDS.split(','))
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether `key`, inside objects reached through `parents` (outermost first), is personal.
    fn hit(&self, parents: &[&[u8]], key: &[u8]) -> bool {
        if !key.contains(&b'\\') && !self.may_be_key(key) {
            return false;
        }
        if key.contains(&b'\\') {
            // An escaped key is compared as the text it stands for.
            let quoted = [&b"\""[..], key, b"\""].concat();
            return serde_json::from_slice::<String>(&quoted)
                .is_ok_and(|k| self.hit(parents, k.as_bytes()));
        }
        self.paths.iter().any(|path| {
            let (last, before) = path.split_last().expect("paths are not empty");
            last.as_bytes() == key
                && before.len() <= parents.len()
                && before
                    .iter()
                    .rev()
                    .zip(parents.iter().rev())
                    .all(|(want, got)| want.as_bytes() == *got)
        })
    }

    /// Whether every key of some path occurs in `body` as a string: when none can, the body
    /// is left as it is without being read as JSON. A string with an escape counts as any key.
    fn may_occur(&self, body: &[u8]) -> bool {
        let mut seen = vec![false; self.keys.len()];
        let mut i = 0;
        while let Some(open) = body
            .get(i..)
            .and_then(|r| r.iter().position(|&c| c == b'"'))
        {
            let start = i + open + 1;
            let Some(len) = body
                .get(start..)
                .and_then(|r| r.iter().position(|&c| c == b'"' || c == b'\\'))
            else {
                break;
            };
            if body[start + len] == b'\\' {
                return true;
            }
            let word = &body[start..start + len];
            i = start + len + 1;
            if !self.may_be_key(word) {
                continue;
            }
            if let Some(k) = self.keys.iter().position(|k| k.as_bytes() == word) {
                seen[k] = true;
            }
        }
        self.paths.iter().any(|path| {
            path.iter().all(|seg| {
                self.keys
                    .iter()
                    .position(|k| k == seg)
                    .is_some_and(|k| seen[k])
            })
        })
    }

    /// `body` with the value of every personal field that is not `null` replaced by `"***"`,
    /// everything else byte for byte as it was. Not JSON: None.
    pub fn mask<'a>(&self, body: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        if self.is_empty() || !self.may_occur(body) {
            return Some(Cow::Borrowed(body));
        }
        let mut scan = Scan {
            b: body,
            i: 0,
            fields: self,
            keys: Vec::new(),
            masked: Vec::new(),
        };
        scan.value(0)?;
        scan.ws();
        if scan.i != body.len() {
            return None;
        }
        if scan.masked.is_empty() {
            return Some(Cow::Borrowed(body));
        }
        // An outer value masked swallows the ones inside it.
        scan.masked.sort_unstable();
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        for (start, end) in scan.masked {
            if start < at {
                continue;
            }
            out.extend_from_slice(&body[at..start]);
            out.extend_from_slice(MASK);
            at = end;
        }
        out.extend_from_slice(&body[at..]);
        Some(Cow::Owned(out))
    }
}

/// Nesting deeper than this is not read (the body is then treated as not JSON).
const MAX_DEPTH: usize = 256;

/// One pass over JSON text noting where the values of personal fields lie.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    fields: &'a PersonalFields,
    /// Keys of the objects around the current value, outermost first.
    keys: Vec<&'a [u8]>,
    masked: Vec<(usize, usize)>,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string at the cursor: the bytes between its quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            let rest = self.b.get(self.i..)?;
            self.i += rest.iter().position(|&c| c == b'"' || c == b'\\')?;
            if self.b[self.i] == b'"' {
                break;
            }
            self.i += 2;
        }
        let s = self.b.get(start..self.i)?;
        self.i += 1;
        Some(s)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => {
                self.i += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    let key = self.string()?;
                    self.eat(b':')?;
                    self.ws();
                    let start = self.i;
                    let hit = self.fields.hit(&self.keys, key);
                    self.keys.push(key);
                    let read = self.value(depth + 1);
                    self.keys.pop();
                    read?;
                    if hit && &self.b[start..self.i] != b"null" {
                        self.masked.push((start, self.i));
                    }
                    if self.eat(b',').is_none() {
                        return self.eat(b'}');
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    if self.eat(b',').is_none() {
                        return self.eat(b']');
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            _ => {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

static PERSONAL: RwLock<Option<Arc<PersonalFields>>> = RwLock::new(None);

/// Sets the personal fields masked in payload logs and in the store's message log.
pub fn set_personal_fields(fields: PersonalFields) {
    let mut p = PERSONAL.write().unwrap_or_else(|p| p.into_inner());
    *p = Some(Arc::new(fields));
}

/// The personal fields in force: as set, else [`DEFAULT_PERSONAL_FIELDS`].
pub fn personal_fields() -> Arc<PersonalFields> {
    if let Some(f) = PERSONAL.read().ok().and_then(|p| p.clone()) {
        return f;
    }
    let mut p = PERSONAL.write().unwrap_or_else(|p| p.into_inner());
    p.get_or_insert_with(|| Arc::new(PersonalFields::defaults()))
        .clone()
}

/// A message body as the store's message log keeps it: personal fields masked; a body that is
/// not JSON as it is.
pub fn for_the_log(body: &[u8]) -> Cow<'_, [u8]> {
    personal_fields().mask(body).unwrap_or(Cow::Borrowed(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_fields_are_masked_by_name_and_by_path_and_nothing_else_changes() {
        let fields = PersonalFields::defaults();
        let body = br#"{"context": {"transaction_id": "t\"1"},
          "message": {"order": {"items": [{"descriptor": {"name": "Soil NPK"}}],
            "billing": {"name": "Asha Devi", "phone": "+91-98100-22222", "email": null},
            "fulfillments": [{"customer": {"person": {"name": "Asha"}, "contact": {"phone": "98765"}},
              "stops": [{"location": {"gps": "28.7,77.0", "address": {"street": "Plot 7"}}}]}]},
            "identityToken": "IDT-9"}}"#;
        let out = String::from_utf8(fields.mask(body).unwrap().into_owned()).unwrap();
        for gone in ["Asha", "+91-98100", "28.7,77.0", "Plot 7", "IDT-9", "98765"] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(
            out.contains("Soil NPK") && out.contains(r#""email": null"#),
            "{out}"
        );
        assert!(out.contains(r#""t\"1""#), "{out}");
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["message"]["order"]["billing"]["name"], "***");
        assert_eq!(
            parsed["message"]["order"]["fulfillments"][0]["stops"][0]["location"]["address"],
            "***"
        );
        // nothing personal: the very same bytes, not read as JSON
        let plain = br#"{"a": {"name": "x"}}"#;
        assert!(matches!(fields.mask(plain), Some(Cow::Borrowed(_))));
        assert_eq!(fields.mask(br#"{"phone": "1""#), None, "not JSON");
        let escaped = fields.mask(br#"{"ph\u006fne": "+91-1"}"#).unwrap();
        assert_eq!(escaped.as_ref(), br#"{"ph\u006fne": "***"}"#);
        assert!(PersonalFields::new([""; 0]).mask(body).is_some());
        assert_eq!(
            PersonalFields::new(["", " "])
                .mask(b"{\"phone\":1}")
                .unwrap()
                .as_ref(),
            b"{\"phone\":1}"
        );
    }

    #[test]
    fn signatures_keep_only_their_key_id() {
        let s = r#"Signature keyId="bap.example|k1|ed25519",algorithm="ed25519",created="1",expires="2",headers="(created) (expires) digest",signature="c2VjcmV0""#;
        let r = signature_summary(s);
        assert_eq!(
            r,
            r#"Signature keyId="bap.example|k1|ed25519" (signature redacted)"#
        );
        assert!(!r.contains("c2VjcmV0"));
        assert_eq!(signature_summary("Bearer abc"), "***");
        let mut h = HeaderMap::new();
        h.insert("authorization", s.parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let j = headers_json(&h);
        assert!(
            !j.contains("c2VjcmV0")
                && j.contains("\"x-api-key\":\"***\"")
                && j.contains("application/json"),
            "{j}"
        );
    }
}
