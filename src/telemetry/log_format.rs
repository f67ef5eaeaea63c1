//! The text log format's fields, with every control character escaped.
//!
//! Logged values come from outside (a URL path, a signed `context.action`, an ERP's error): a
//! raw newline in one would forge a log line, a raw ESC would reach an operator's terminal. The
//! default field formatter writes `%`-values and messages as they are; this one writes them
//! with `\n`, `\r`, `\t` and `\u{..}` in place of control characters (and of the Unicode line
//! and paragraph separators). The JSON format escapes them itself.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Formats fields as `name=value`, separated by spaces, the message first and bare.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            out: Escaping(writer),
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'writer> {
    out: Escaping<Writer<'writer>>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn separate(&mut self) -> fmt::Result {
        if !self.first {
            self.out.0.write_char(' ')?;
        }
        self.first = false;
        Ok(())
    }

    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Fields of `log` records carried into tracing: the formatter shows them elsewhere.
        if name.starts_with("log.") {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if name != "message" {
                let name = name.strip_prefix("r#").unwrap_or(name);
                self.out.0.write_str(name)?;
                self.out.0.write_char('=')?;
            }
            self.out.write_fmt(value)
        });
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            // Quoted, as the default format does: a string field is told from a number.
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// Writes through to `W`, control characters escaped.
struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(needs_escape) {
            self.0.write_str(&rest[..at])?;
            let mut chars = rest[at..].chars();
            let Some(c) = chars.next() else { break };
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `s` as [`EscapedFields`] writes it: for log lines built by hand.
pub fn escape(s: &str) -> String {
    let mut out = Escaping(String::with_capacity(s.len()));
    // Writing into a String cannot fail.
    let _ = out.write_str(s);
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape("search\n2026-01-01 ERROR forged\x1b[31m\r\t\u{7f}\u{85}\u{2028}é"),
            "search\\n2026-01-01 ERROR forged\\u{1b}[31m\\r\\t\\u{7f}\\u{85}\\u{2028}é"
        );
        assert_eq!(escape("plain text"), "plain text");
    }
}
