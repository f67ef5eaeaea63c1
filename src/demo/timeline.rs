//! The demo's timeline: one line per message (who sent what to whom) with its business content
//! in a few words, read from the Beckn bodies themselves.

use std::collections::HashMap;
use std::io::Write;

use serde_json::Value;

/// Width of the message-name column.
const WHAT: usize = 11;

/// Where the timeline is written, and the names participants are shown by.
pub struct Timeline<'a> {
    out: &'a mut (dyn Write + Send),
    /// Subscriber id -> the name shown (flow name, then the lab's own name once known).
    names: HashMap<String, String>,
}

impl<'a> Timeline<'a> {
    pub fn new(out: &'a mut (dyn Write + Send), names: HashMap<String, String>) -> Self {
        Timeline { out, names }
    }

    /// The name `subscriber_id` is shown by.
    pub fn name(&self, subscriber_id: &str) -> String {
        self.names
            .get(subscriber_id)
            .cloned()
            .unwrap_or_else(|| subscriber_id.to_string())
    }

    /// Shows `subscriber_id` as `name` from now on.
    pub fn learn(&mut self, subscriber_id: &str, name: &str) {
        if !name.is_empty() {
            self.names
                .insert(subscriber_id.to_string(), name.to_string());
        }
    }

    /// `  3  what        text` (no step number on lines that continue a step).
    pub fn line(&mut self, step: Option<usize>, what: &str, text: &str) {
        let step = step.map_or(String::new(), |s| s.to_string());
        let _ = writeln!(self.out, "{step:>3}  {what:<WHAT$} {text}");
        let _ = self.out.flush();
    }

    /// A line of its own (headings, the summary).
    pub fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

fn s<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn list<'v>(v: &'v Value, pointer: &str) -> &'v [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `₹499.00` for rupees, `12.00 USD` otherwise.
pub fn money(price: &Value) -> String {
    let value = s(price, "/value");
    match s(price, "/currency") {
        "INR" | "" => format!("₹{value}"),
        other => format!("{value} {other}"),
    }
}

/// `2026-11-24 09:00` from an RFC 3339 time.
fn when(time: &str) -> String {
    time.get(..16)
        .map_or_else(|| time.to_string(), |t| t.replace('T', " "))
}

/// The values of the tags `code` in group `group`.
pub fn tag_values<'v>(tags: &'v Value, group: &str, code: Option<&str>) -> Vec<(&'v str, &'v str)> {
    tags.as_array()
        .into_iter()
        .flatten()
        .filter(|g| s(g, "/descriptor/code") == group)
        .flat_map(|g| list(g, "/list").iter())
        .filter(|t| code.is_none_or(|c| s(t, "/descriptor/code") == c))
        .map(|t| (s(t, "/descriptor/code"), s(t, "/value")))
        .collect()
}

/// How a fulfillment type reads.
fn collection(kind: &str) -> String {
    match kind {
        "home" => "home collection".into(),
        "lab" => "sample dropped at the lab".into(),
        "virtual" => "video consultation".into(),
        other => format!("{other} fulfillment"),
    }
}

/// What the app asked for, in a few words; `name` shows an item or provider id by its name.
pub fn request_summary(action: &str, body: &Value, name: &dyn Fn(&str) -> String) -> String {
    let m = &body["message"];
    match action {
        "search" => {
            let crop = tag_values(&m["intent"]["tags"], "crop", Some("name"))
                .first()
                .map(|(_, v)| v.to_string());
            let pincode = s(m, "/intent/fulfillment/stops/0/location/area_code");
            let mode = s(m, "/intent/fulfillment/type");
            let mut parts = Vec::new();
            if let Some(crop) = crop {
                parts.push(crop);
            }
            if !pincode.is_empty() {
                parts.push(format!("pincode {pincode}"));
            }
            if !mode.is_empty() {
                parts.push(collection(mode));
            }
            if parts.is_empty() {
                "everything".into()
            } else {
                parts.join(", ")
            }
        }
        "select" | "init" | "confirm" => {
            let items: Vec<String> = list(m, "/order/items")
                .iter()
                .map(|i| {
                    let count = i
                        .pointer("/quantity/selected/count")
                        .and_then(Value::as_u64)
                        .unwrap_or(1);
                    format!("{} × {count}", name(s(i, "/id")))
                })
                .collect();
            let mode = s(m, "/order/fulfillments/0/type");
            let mut text = format!(
                "{} from {}",
                items.join(", "),
                name(s(m, "/order/provider/id"))
            );
            if !mode.is_empty() {
                text.push_str(&format!(", {}", collection(mode)));
            }
            let slot = s(m, "/order/fulfillments/0/stops/0/time/range/start");
            if !slot.is_empty() {
                text.push_str(&format!(", pickup {}", when(slot)));
            }
            let billing = s(m, "/order/billing/name");
            if !billing.is_empty() && action != "confirm" {
                text.push_str(&format!(", billing {billing}"));
            }
            text
        }
        "status" | "track" => format!("order {}", s(m, "/order_id")),
        "cancel" => format!(
            "order {}, reason {}",
            s(m, "/order_id"),
            s(m, "/cancellation_reason_id")
        ),
        "rating" => list(m, "/ratings")
            .iter()
            .map(|r| {
                format!(
                    "{} {}: {} stars",
                    s(r, "/rating_category"),
                    s(r, "/id"),
                    s(r, "/value")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        "support" => format!(
            "order {}, call back {}",
            s(m, "/support/ref_id"),
            s(m, "/support/callback_phone")
        ),
        _ => String::new(),
    }
}

/// What a callback says, in a few words. `request` is the request it answers, if known.
pub fn callback_summary(body: &Value, request: Option<&Value>) -> String {
    if let Some(e) = body.get("error").filter(|e| !e.is_null()) {
        return format!("error {}: {}", s(e, "/code"), s(e, "/message"));
    }
    let m = &body["message"];
    match s(body, "/context/action") {
        "on_search" => {
            let items: Vec<&Value> = list(m, "/catalog/providers")
                .iter()
                .flat_map(|p| list(p, "/items").iter())
                .collect();
            if items.is_empty() {
                let pincode = request
                    .map(|r| s(r, "/message/intent/fulfillment/stops/0/location/area_code"))
                    .unwrap_or_default();
                return if pincode.is_empty() {
                    "no tests for this search".into()
                } else {
                    format!("no tests at pincode {pincode} (outside its service area)")
                };
            }
            let shown: Vec<String> = items
                .iter()
                .take(3)
                .map(|i| format!("{} {}", s(i, "/descriptor/name"), money(&i["price"])))
                .collect();
            let more = if items.len() > 3 { ", …" } else { "" };
            format!("{} tests: {}{more}", items.len(), shown.join(", "))
        }
        "on_select" => {
            let quote = &m["order"]["quote"];
            let parts: Vec<String> = list(quote, "/breakup")
                .iter()
                .map(|b| format!("{} {}", s(b, "/title"), money(&b["price"])))
                .collect();
            let slots = tag_values(
                &m["order"]["fulfillments"][0]["tags"],
                "collection-slots",
                None,
            );
            let mut text = format!("quote {} ({})", money(&quote["price"]), parts.join(" + "));
            if let Some((_, first)) = slots.first() {
                let start = first.split('/').next().unwrap_or_default();
                text.push_str(&format!(
                    ", {} collection slots from {}",
                    slots.len(),
                    when(start)
                ));
            }
            text
        }
        "on_init" => {
            let o = &m["order"];
            let mut text = format!(
                "{} to pay {} ({})",
                money(&o["quote"]["price"]),
                s(o, "/payments/0/type"),
                s(o, "/payments/0/collected_by")
            );
            let slot = s(o, "/fulfillments/0/stops/0/time/range/start");
            if !slot.is_empty() {
                text.push_str(&format!(", pickup {}", when(slot)));
            }
            let billing = s(o, "/billing/name");
            if !billing.is_empty() {
                text.push_str(&format!(", billed to {billing}"));
            }
            text
        }
        "on_confirm" => order_summary(&m["order"], true),
        "on_status" | "on_cancel" | "on_update" => order_summary(&m["order"], false),
        "on_track" => {
            let t = &m["tracking"];
            let url = s(t, "/url");
            if url.is_empty() {
                format!("tracking {}", s(t, "/status"))
            } else {
                format!("tracking {}: {url}", s(t, "/status"))
            }
        }
        "on_rating" => format!("feedback form {}", s(m, "/feedback_form/form/url")),
        "on_support" => format!(
            "ticket {}, helpline {}, {}",
            s(m, "/support/ref_id"),
            s(m, "/support/phone"),
            s(m, "/support/email")
        ),
        _ => String::new(),
    }
}

fn order_summary(o: &Value, priced: bool) -> String {
    let state = &o["fulfillments"][0]["state"]["descriptor"];
    let mut text = if s(state, "/code") == s(o, "/status") {
        format!(
            "order {} {} ({})",
            s(o, "/id"),
            s(o, "/status"),
            s(state, "/name")
        )
    } else {
        format!(
            "order {} {}, {} ({})",
            s(o, "/id"),
            s(o, "/status"),
            s(state, "/code"),
            s(state, "/name")
        )
    };
    let agent = s(o, "/fulfillments/0/agent/person/name");
    if !agent.is_empty() {
        text.push_str(&format!(", agent {agent}"));
    }
    if let Some((_, url)) = tag_values(&o["tags"], "report", Some("url")).first() {
        text.push_str(&format!(", report {url}"));
    }
    if let Some((_, fee)) = tag_values(&o["tags"], "cancellation", Some("fee")).first() {
        text.push_str(&format!(", cancellation fee ₹{fee}"));
    }
    if priced && !o["quote"]["price"].is_null() {
        text.push_str(&format!(", {}", money(&o["quote"]["price"])));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn catalogs_read_in_one_line() {
        let body = json!({"context": {"action": "on_search"}, "message": {"catalog": {"providers": [{"items": [
            {"descriptor": {"name": "Soil NPK Package"}, "price": {"currency": "INR", "value": "499.00"}},
            {"descriptor": {"name": "Micro"}, "price": {"currency": "INR", "value": "899.00"}}
        ]}]}}});
        assert_eq!(
            callback_summary(&body, None),
            "2 tests: Soil NPK Package ₹499.00, Micro ₹899.00"
        );
        let empty =
            json!({"context": {"action": "on_search"}, "message": {"catalog": {"providers": []}}});
        let request = json!({"message": {"intent": {"fulfillment": {"stops": [{"location": {"area_code": "110081"}}]}}}});
        assert_eq!(
            callback_summary(&empty, Some(&request)),
            "no tests at pincode 110081 (outside its service area)"
        );
        let error = json!({"context": {"action": "on_select"}, "error": {"code": "30004", "message": "no such test"}});
        assert_eq!(callback_summary(&error, None), "error 30004: no such test");
    }

    #[test]
    fn requests_read_in_one_line() {
        let search = json!({"message": {"intent": {
            "fulfillment": {"type": "home", "stops": [{"location": {"area_code": "110081"}}]},
            "tags": [{"descriptor": {"code": "crop"}, "list": [{"descriptor": {"code": "name"}, "value": "wheat"}]}]}}});
        let same = |id: &str| id.to_string();
        assert_eq!(
            request_summary("search", &search, &same),
            "wheat, pincode 110081, home collection"
        );
        assert_eq!(
            request_summary(
                "status",
                &json!({"message": {"order_id": "GFSL-000001"}}),
                &same
            ),
            "order GFSL-000001"
        );
    }
}
