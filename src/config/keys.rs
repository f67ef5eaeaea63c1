//! How a flow names its keys: a private key given as a value or read from a file, an
//! environment variable or a command's output; the key that takes over signing (rotation).

use schemars::JsonSchema;
use serde::Deserialize;

use super::secret::Secret;
use super::values::HumanDuration;

/// A private key: the value itself (usually `${NAME}` from the environment), or where the
/// adapter reads it when the flow is loaded.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a base64 key, or where to read it: { file: PATH }, { env: NAME } or { command: [PROGRAM, ARGS...] }"
)]
pub enum KeySource {
    /// The key itself, base64.
    Value(Secret),
    /// Read from a file, an environment variable or a command's output.
    From(KeyFrom),
}

/// Where a private key is read from; exactly one of `file`, `env` and `command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyFrom {
    /// A file holding the key (relative to the project root); surrounding whitespace is ignored.
    #[serde(default)]
    pub file: Option<String>,
    /// An environment variable holding the key.
    #[serde(default)]
    pub env: Option<String>,
    /// A program and its arguments whose standard output is the key (a vault or KMS CLI), run
    /// without a shell when the flow is loaded.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long `command` may run (default 10s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

/// The signing key that takes over from `signing_private_key` when keys are rotated. It is
/// published to the registry first, then signs from `sign_from` on; until then the current key
/// signs and peers keep verifying it for as long as the registry keeps its entry.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NextKey {
    /// The registry's unique key id of the next key (not the current `key_id`).
    pub key_id: String,
    /// ed25519 signing key, given like `signing_private_key`.
    pub signing_private_key: KeySource,
    /// When signing switches to this key (RFC 3339, `2026-12-01T12:00:00Z`), by the adapter's
    /// clock and without a restart or reload; absent: not yet (the current key signs).
    #[serde(default)]
    pub sign_from: Option<String>,
}
