//! The Beckn 1.1.0 actions: the ten requests and their `on_*` callbacks.

use std::fmt;
use std::str::FromStr;

/// A request action, as received by a BPP (or sent by a BAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Search,
    Select,
    Init,
    Confirm,
    Status,
    Track,
    Cancel,
    Update,
    Rating,
    Support,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Search,
        Action::Select,
        Action::Init,
        Action::Confirm,
        Action::Status,
        Action::Track,
        Action::Cancel,
        Action::Update,
        Action::Rating,
        Action::Support,
    ];

    /// The nine actions a BPP serves in the soil-testing API reference (it has no `update`).
    pub const BPP_SOIL: [Action; 9] = [
        Action::Search,
        Action::Select,
        Action::Init,
        Action::Confirm,
        Action::Status,
        Action::Track,
        Action::Cancel,
        Action::Rating,
        Action::Support,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Search => "search",
            Action::Select => "select",
            Action::Init => "init",
            Action::Confirm => "confirm",
            Action::Status => "status",
            Action::Track => "track",
            Action::Cancel => "cancel",
            Action::Update => "update",
            Action::Rating => "rating",
            Action::Support => "support",
        }
    }

    /// The name of the callback answering this action (`on_search` for `search`).
    pub fn callback(self) -> &'static str {
        match self {
            Action::Search => "on_search",
            Action::Select => "on_select",
            Action::Init => "on_init",
            Action::Confirm => "on_confirm",
            Action::Status => "on_status",
            Action::Track => "on_track",
            Action::Cancel => "on_cancel",
            Action::Update => "on_update",
            Action::Rating => "on_rating",
            Action::Support => "on_support",
        }
    }

    /// Whether the callback body must carry `message` even when it reports an error (the core
    /// schema requires it for `on_rating` only).
    pub fn callback_requires_message(self) -> bool {
        matches!(self, Action::Rating)
    }

    /// Read-only actions whose backend calls may be retried safely.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Action::Search | Action::Status | Action::Track)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of the ten Beckn request actions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Beckn action")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(a.callback(), format!("on_{a}"));
        }
        assert!("on_search".parse::<Action>().is_err());
    }
}
