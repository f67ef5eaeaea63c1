//! Small value types of the flow file: durations and numbers or booleans that may come from
//! `${VAR}` interpolation (which always yields strings).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

/// A duration written the human way (`3s`, `250ms`, `10m`) or in ISO 8601 (`PT10M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A `Span` accepts days and weeks too (`7d`, `P1W`); a day counts as 24 hours here.
        let span: jiff::Span = s.trim().parse().map_err(|e| {
            format!("`{s}` is not a duration (try `3s`, `250ms`, `7d` or `PT10M`): {e}")
        })?;
        let parsed = span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .map_err(|e| {
                format!("`{s}` cannot be a fixed duration (months and years vary): {e}")
            })?;
        Duration::try_from(parsed)
            .map(HumanDuration)
            .map_err(|_| format!("duration `{s}` must not be negative"))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl JsonSchema for HumanDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "a duration: `250ms`, `3s`, `10m`, or ISO 8601 (`PT10M`)",
            "examples": ["3s", "250ms", "PT10M"]
        })
    }
}

/// A number that may also be given as a string (as `${VAR}` produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Count(n)),
            Raw::S(s) => s
                .trim()
                .parse()
                .map(Count)
                .map_err(|_| de::Error::custom(format!("`{s}` is not a whole number"))),
        }
    }
}

impl JsonSchema for Count {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Count".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // A string is allowed because `${VAR}` always yields one.
        json_schema!({
            "type": ["integer", "string"],
            "minimum": 0,
            "description": "a whole number (or a string holding one, as `${VAR}` gives)"
        })
    }
}

/// A boolean that may also be given as `"true"`/`"false"` (as `${VAR}` produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(b) => Ok(Flag(b)),
            Raw::S(s) => match s.trim() {
                "true" | "yes" | "on" | "1" => Ok(Flag(true)),
                "false" | "no" | "off" | "0" | "" => Ok(Flag(false)),
                other => Err(de::Error::custom(format!("`{other}` is not true or false"))),
            },
        }
    }
}

impl JsonSchema for Flag {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Flag".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["boolean", "string"],
            "description": "true or false (or a string holding one, as `${VAR}` gives)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            "3s".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(3)
        );
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "PT10M".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(600)
        );
        assert_eq!(
            "7d".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(7 * 86400)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn lenient_scalars() {
        let c: Count = serde_json::from_value(serde_json::json!("42")).unwrap();
        assert_eq!(c, Count(42));
        let f: Flag = serde_json::from_value(serde_json::json!("true")).unwrap();
        assert!(f.0);
        assert!(serde_json::from_value::<Flag>(serde_json::json!("maybe")).is_err());
    }
}
