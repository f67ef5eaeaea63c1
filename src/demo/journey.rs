//! The farmer's journey, played through the farmer app's client API as an app would: search by
//! crop and pincode, pick a test, select, init with billing and a pickup slot from on_select,
//! confirm, follow the order (status, the lab's unsolicited updates, track), cancel a second
//! order, rate, ask for support; then book a second test at Bhoomi Soil Labs, whose lab system
//! is the sample LIMS (OAuth2, a paged catalog, bookings that say almost nothing) and follow
//! it by asking. Each step checks what came back and stops the journey with the reason when
//! it is not what a farmer would expect.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::DemoError;
use super::app::Delivery;
use super::network::SampleNetwork;
use super::timeline::{Timeline, callback_summary, request_summary, tag_values};

mod lims;
use lims::{LIMS_PROVIDER, LIMS_TEST};

/// How long any one answer may take before the journey gives up.
const PATIENCE: Duration = Duration::from_secs(10);
/// The farm: Kanjhawala, north-west Delhi.
const PINCODE: &str = "110081";
const LAB: &str = "GFSL";
const PACKAGE: &str = "soil-npk-package";

/// What the journey did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JourneyReport {
    pub steps: usize,
    /// Beckn requests sent and callbacks received by the farmer app.
    pub messages: usize,
    /// Webhook deliveries whose HMAC the app verified.
    pub webhooks: usize,
    /// Order states Flipkart Ultra's OMS accepted for the farmer.
    pub ultra_updates: usize,
}

pub struct Journey<'n, 'o> {
    net: &'n SampleNetwork,
    http: reqwest::Client,
    timeline: Timeline<'o>,
    bap: String,
    step: usize,
    report: JourneyReport,
    /// Webhook deliveries already shown, by callback message id.
    shown: HashSet<String>,
    /// The farmer's Ultra session, sent with every call once signed in.
    session: Option<String>,
}

impl<'n, 'o> Journey<'n, 'o> {
    pub fn new(net: &'n SampleNetwork, timeline: Timeline<'o>) -> Self {
        Journey {
            net,
            http: reqwest::Client::new(),
            bap: timeline.name("farmer-app.example"),
            timeline,
            step: 0,
            report: JourneyReport::default(),
            shown: HashSet::new(),
            session: None,
        }
    }

    fn fail(&self, name: &str, reason: impl Into<String>) -> DemoError {
        DemoError::Step {
            step: self.step,
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// Plays the whole journey.
    pub async fn play(mut self) -> Result<(JourneyReport, Timeline<'o>), DemoError> {
        // 0. The farmer opens the app inside Flipkart: the Ultra SDK hands it a grant token,
        //    which the app trades for a session on its client API.
        self.sign_in().await?;

        // 1. What tests are there for wheat near the farm? (the app's own JSON; the flow's
        //    request template makes the Beckn intent, its response template the lab list)
        let found = self
            .call(
                "search",
                "search",
                "sync",
                json!({"crop": "wheat", "pincode": PINCODE, "collection": "home"}),
            )
            .await?;
        let transaction_id = found["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if found["status"] != "complete" {
            return Err(self.fail(
                "search",
                format!("not every lab answered: {}", found["summary"]),
            ));
        }
        let offered = found["result"]["labs"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["tests"].as_array().into_iter().flatten())
            .any(|t| t["provider_id"] == LAB && t["id"] == PACKAGE);
        if !offered {
            return Err(self.fail("search", format!("{LAB} does not offer {PACKAGE}")));
        }
        let offered_by_lims = found["result"]["labs"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["tests"].as_array().into_iter().flatten())
            .any(|t| t["provider_id"] == LIMS_PROVIDER && t["id"] == LIMS_TEST);
        if !offered_by_lims {
            return Err(self.fail(
                "search",
                format!("{LIMS_PROVIDER} does not offer {LIMS_TEST}"),
            ));
        }

        // 2. The farmer picks GreenField's NPK test with home pickup.
        let items = json!([{"id": PACKAGE, "quantity": {"selected": {"count": 1}}}]);
        let selected = self
            .call(
                "select",
                "select",
                "sync",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"order": farm_order(&items, None, false)}}),
            )
            .await?;
        let on_select = self.answer("select", &selected)?;
        let slots = tag_values(
            &on_select["message"]["order"]["fulfillments"][0]["tags"],
            "collection-slots",
            None,
        );
        let Some((_, slot)) = slots.first() else {
            return Err(self.fail("select", "on_select offers no collection slot"));
        };
        let slot_start = slot.split('/').next().unwrap_or_default().to_string();

        // 3. Billing and the first pickup slot on offer.
        let order = farm_order(&items, Some(&slot_start), true);
        let initialised = self
            .call(
                "init",
                "init",
                "sync",
                json!({"context": {"transaction_id": transaction_id}, "message": {"order": order}}),
            )
            .await?;
        self.answer("init", &initialised)?;

        // 4. Book it.
        let confirmed = self
            .call(
                "confirm",
                "confirm",
                "sync",
                json!({"context": {"transaction_id": transaction_id}, "message": {"order": order}}),
            )
            .await?;
        let on_confirm = self.answer("confirm", &confirmed)?;
        let order_id = on_confirm["message"]["order"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if order_id.is_empty() {
            return Err(self.fail("confirm", "on_confirm carries no order id"));
        }

        // 5. Status, asynchronously: the message id at once, the answer later.
        let status = self
            .call(
                "status (async)",
                "status",
                "async",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"order_id": order_id}}),
            )
            .await?;
        self.collect_later("status (async)", &status).await?;

        // 6. The lab's ERP assigns an agent: an unsolicited on_status reaches the app.
        self.advance(&order_id, "AGENT-ASSIGNED").await?;

        // 7. Track the agent, the answer posted to the app's webhook.
        let track = self
            .call(
                "track (webhook)",
                "track",
                "webhook",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"order_id": order_id}}),
            )
            .await?;
        let message_id = track["message_id"].as_str().unwrap_or_default().to_string();
        self.delivered("track (webhook)", |d| {
            d.envelope["event"] == "answer" && d.envelope["message_id"] == message_id.as_str()
        })
        .await?;

        // 8. The sample is collected, reaches the lab, is tested; the report is ready.
        for state in [
            "SAMPLE-COLLECTED",
            "SAMPLE-RECEIVED",
            "TESTING",
            "REPORT-READY",
        ] {
            self.advance(&order_id, state).await?;
        }

        // 9. The farmer looks at the finished order.
        let done = self
            .call(
                "status",
                "status",
                "sync",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"order_id": order_id}}),
            )
            .await?;
        let on_status = self.answer("status", &done)?;
        if on_status["message"]["order"]["status"] != "COMPLETE" {
            return Err(self.fail("status", "the order is not complete after the report"));
        }

        // 10. A second order, for the micronutrient panel (lab drop), in a new transaction
        //     that names the lab itself...
        let second_items =
            json!([{"id": "soil-micronutrient-panel", "quantity": {"selected": {"count": 1}}}]);
        let mut second = farm_order(&second_items, None, true);
        second["fulfillments"][0]["type"] = json!("lab");
        let gfsl = self.subscriber_of("greenfield-lab");
        let booked = self
            .call(
                "confirm (2nd order)",
                "confirm",
                "sync",
                json!({"context": {"bpp_id": gfsl}, "message": {"order": second}}),
            )
            .await?;
        let second_txn = booked["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let on_confirm = self.answer("confirm (2nd order)", &booked)?;
        let second_id = on_confirm["message"]["order"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();

        // 11. ...which the farmer cancels; the lab's ERP also announces it.
        let cancelled = self
            .call(
                "cancel",
                "cancel",
                "sync",
                json!({"context": {"transaction_id": second_txn},
                       "message": {"order_id": second_id, "cancellation_reason_id": "FARMER-UNAVAILABLE"}}),
            )
            .await?;
        let on_cancel = self.answer("cancel", &cancelled)?;
        if on_cancel["message"]["order"]["status"] != "CANCELLED" {
            return Err(self.fail("cancel", "the order is not cancelled"));
        }
        let cancelled_id = second_id.clone();
        self.delivered("cancel", move |d| {
            d.envelope["event"] == "unsolicited"
                && d.envelope["callback"]["message"]["order"]["id"] == cancelled_id.as_str()
                && d.envelope["callback"]["message"]["order"]["status"] == "CANCELLED"
        })
        .await?;

        // 12. Four stars for the first order.
        let rated = self
            .call(
                "rating",
                "rating",
                "sync",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"ratings": [{"rating_category": "Order", "id": order_id, "value": "4"}]}}),
            )
            .await?;
        self.answer("rating", &rated)?;

        // 13. And a question about the report.
        let support = self
            .call(
                "support",
                "support",
                "sync",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"support": {"ref_id": order_id, "callback_phone": "+91-98100-22222"}}}),
            )
            .await?;
        self.answer("support", &support)?;

        let refused: Vec<String> = self
            .net
            .app
            .deliveries()
            .into_iter()
            .filter_map(|d| d.verified.err())
            .collect();
        if !refused.is_empty() {
            return Err(self.fail(
                "webhook",
                format!(
                    "deliveries the app could not verify: {}",
                    refused.join("; ")
                ),
            ));
        }
        // 14. Both orders are in the farmer's "My Orders" on Flipkart.
        self.ultra_orders(&[
            (
                order_id.as_str(),
                &["ORDER_CONFIRMED", "ORDER_FULFILLED"][..],
            ),
            (
                second_id.as_str(),
                &["ORDER_CONFIRMED", "ORDER_CANCELLED"][..],
            ),
        ])
        .await?;

        // 19-25. A micronutrient test at Bhoomi Soil Labs, the lab on the LIMS.
        self.book_at_the_lims().await?;
        self.report.steps = self.step;
        Ok((self.report, self.timeline))
    }

    fn subscriber_of(&self, flow: &str) -> String {
        self.net
            .flows
            .load()
            .flow(flow)
            .map(|f| f.participant.subscriber_id.clone())
            .unwrap_or_default()
    }

    /// Calls the client API and shows the request, its ACK and, for a synchronous call, the
    /// callbacks; returns the answer document.
    async fn call(
        &mut self,
        name: &str,
        action: &str,
        mode: &str,
        body: Value,
    ) -> Result<Value, DemoError> {
        self.step += 1;
        let url = format!("{}/{action}?mode={mode}", self.net.client_api);
        let mut request = self.http.post(&url).json(&body);
        if let Some(session) = &self.session {
            request = request.header(crate::sinks::ultra::sign_in::SESSION_HEADER, session);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.fail(name, format!("the client API did not answer: {e}")))?;
        let status = response.status().as_u16();
        let doc: Value = response
            .json()
            .await
            .map_err(|e| self.fail(name, format!("the client API answered no JSON: {e}")))?;
        if let Some(error) = doc.get("error") {
            return Err(self.fail(
                name,
                format!(
                    "HTTP {status}: {}",
                    error["message"].as_str().unwrap_or_default()
                ),
            ));
        }
        let to = self
            .timeline
            .name(doc["sent"]["to"].as_str().unwrap_or_default());
        let request = &doc["request"];
        let asked = request_summary(action, request, &|id| self.timeline.name(id));
        self.timeline.line(
            Some(self.step),
            action,
            &format!("{} → {to} ({mode}): {asked}", self.bap),
        );
        self.report.messages += 1;
        let ack = doc["ack"]["status"].as_str().unwrap_or_default();
        if ack != "ACK" {
            let why = doc["summary"].as_str().unwrap_or_default().to_string();
            self.timeline.line(None, ack, &why);
            return Err(self.fail(name, why));
        }
        self.timeline
            .line(None, "ACK", &format!("{to} → {}", self.bap));
        if mode == "sync" {
            self.show_responses(&doc);
        }
        Ok(doc)
    }

    fn show_responses(&mut self, doc: &Value) {
        let recipient = doc["sent"]["to"].as_str().unwrap_or_default();
        let through_gateway = doc["expected"]
            .as_array()
            .is_some_and(|e| !e.iter().any(|x| x == recipient));
        for r in doc["responses"].as_array().into_iter().flatten() {
            let bpp = r["context"]["bpp_id"].as_str().unwrap_or_default();
            if let Some(name) = r["message"]["catalog"]["descriptor"]["name"].as_str() {
                self.timeline.learn(bpp, name);
            }
            // Providers and tests are shown by their names from here on.
            for p in r["message"]["catalog"]["providers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = p["id"].as_str().unwrap_or_default();
                self.timeline
                    .learn(id, p["descriptor"]["name"].as_str().unwrap_or_default());
                for i in p["items"].as_array().into_iter().flatten() {
                    let id = i["id"].as_str().unwrap_or_default();
                    self.timeline
                        .learn(id, i["descriptor"]["name"].as_str().unwrap_or_default());
                }
            }
            let via = if through_gateway {
                format!(" via {}", self.timeline.name(recipient))
            } else {
                String::new()
            };
            let text = format!(
                "{} → {}{via}: {}",
                self.timeline.name(bpp),
                self.bap,
                callback_summary(r, Some(&doc["request"]))
            );
            self.timeline.line(
                None,
                r["context"]["action"].as_str().unwrap_or_default(),
                &text,
            );
            self.report.messages += 1;
        }
        for m in doc["missing"].as_array().into_iter().flatten() {
            let text = format!(
                "{}: {}",
                self.timeline.name(m["bpp_id"].as_str().unwrap_or_default()),
                m["reason"].as_str().unwrap_or_default()
            );
            self.timeline.line(None, "missing", &text);
        }
    }

    /// The one callback a synchronous call got, without error.
    fn answer(&self, name: &str, doc: &Value) -> Result<Value, DemoError> {
        let Some(first) = doc["responses"].get(0) else {
            return Err(self.fail(
                name,
                doc["summary"].as_str().unwrap_or("no answer").to_string(),
            ));
        };
        if let Some(e) = first.get("error") {
            return Err(self.fail(
                name,
                format!(
                    "the lab answered error {}: {}",
                    e["code"].as_str().unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                ),
            ));
        }
        Ok(first.clone())
    }

    /// For an asynchronous call: asks for the answers until they are all in.
    async fn collect_later(&mut self, name: &str, doc: &Value) -> Result<Value, DemoError> {
        let message_id = doc["message_id"].as_str().unwrap_or_default().to_string();
        let url = format!("{}/responses/{message_id}", self.net.client_api);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut polls = 0;
        let answered = loop {
            polls += 1;
            let got: Value = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| self.fail(name, format!("GET {url}: {e}")))?
                .json()
                .await
                .map_err(|e| self.fail(name, format!("GET {url}: {e}")))?;
            if got["status"] != "waiting" {
                break got;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.fail(name, "the answer did not come"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.timeline.line(
            None,
            "GET",
            &format!(
                "/responses/{message_id} → {} after {polls} look{}",
                answered["status"].as_str().unwrap_or_default(),
                if polls == 1 { "" } else { "s" }
            ),
        );
        self.show_responses(&answered);
        self.answer(name, &answered)
    }

    /// The lab's staff move the order on; the unsolicited on_status reaches the app's webhook.
    async fn advance(&mut self, order_id: &str, state: &str) -> Result<(), DemoError> {
        self.step += 1;
        let name = format!("lab ERP: {state}");
        let order = self
            .net
            .erp
            .advance(LAB, order_id)
            .map_err(|e| self.fail(&name, e.to_string()))?;
        let lab = self.timeline.name(&self.subscriber_of("greenfield-lab"));
        self.timeline.line(
            Some(self.step),
            "lab ERP",
            &format!("{lab} moves {order_id} on to {}", order.status),
        );
        let (order_id, state) = (order_id.to_string(), state.to_string());
        self.delivered(&name, move |d| {
            let o = &d.envelope["callback"]["message"]["order"];
            d.envelope["event"] == "unsolicited"
                && o["id"] == order_id.as_str()
                && o["fulfillments"][0]["state"]["descriptor"]["code"] == state.as_str()
        })
        .await?;
        Ok(())
    }

    /// Signs the farmer in with a grant token from the Ultra stand-in.
    async fn sign_in(&mut self) -> Result<(), DemoError> {
        const NAME: &str = "Ultra sign-in";
        self.step += 1;
        let (grant, _) = self
            .net
            .ultra
            .grant("+91-98100-22222", "asha.devi@example.org");
        let url = format!("{}/ultra/sign-in", self.net.client_api);
        let response = self
            .http
            .post(&url)
            .json(&json!({"grantToken": grant}))
            .send()
            .await
            .map_err(|e| self.fail(NAME, format!("the client API did not answer: {e}")))?;
        let doc: Value = response
            .json()
            .await
            .map_err(|e| self.fail(NAME, format!("the client API answered no JSON: {e}")))?;
        let Some(session) = doc["session"].as_str() else {
            return Err(self.fail(NAME, format!("no session: {doc}")));
        };
        self.timeline.line(
            Some(self.step),
            "sign-in",
            &format!(
                "{} ← Flipkart Ultra: grant token exchanged (secureToken RS256), user {} / {}",
                self.bap,
                doc["user"]["mobile"].as_str().unwrap_or("?"),
                doc["user"]["email"].as_str().unwrap_or("?"),
            ),
        );
        self.session = Some(session.to_string());
        Ok(())
    }

    /// Waits until Ultra's OMS holds each order with the given states, and shows them.
    async fn ultra_orders(&mut self, wanted: &[(&str, &[&str])]) -> Result<(), DemoError> {
        self.step += 1;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let orders = loop {
            let orders = self.net.ultra.orders();
            let done = wanted.iter().all(|(id, states)| {
                orders.iter().any(|o| {
                    o.order_id == *id
                        && o.states
                            .iter()
                            .map(String::as_str)
                            .eq(states.iter().copied())
                })
            });
            if done {
                break orders;
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<String> = orders
                    .iter()
                    .map(|o| format!("{} {}", o.order_id, o.states.join(" → ")))
                    .collect();
                return Err(self.fail(
                    "Ultra orders",
                    format!("Ultra's OMS holds {seen:?}, not what the journey did"),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        for (id, _) in wanted {
            let Some(o) = orders.iter().find(|o| o.order_id == *id) else {
                continue;
            };
            let amount = |k: &str| o.latest[k].as_f64().unwrap_or_default();
            self.timeline.line(
                Some(self.step),
                "Ultra OMS",
                &format!(
                    "My Orders: {id} {} (paid ₹{:.2}, refunded ₹{:.2})",
                    o.states.join(" → "),
                    amount("forwardTransaction"),
                    amount("reverseTransaction"),
                ),
            );
            self.report.ultra_updates += o.states.len();
        }
        Ok(())
    }

    /// Waits for a webhook delivery the app has not seen yet, and shows it.
    async fn delivered(
        &mut self,
        name: &str,
        wanted: impl Fn(&Delivery) -> bool,
    ) -> Result<Delivery, DemoError> {
        let shown = self.shown.clone();
        let delivery = self
            .net
            .app
            .wait_for(PATIENCE, |d| {
                !shown.contains(
                    d.envelope["callback"]["context"]["message_id"]
                        .as_str()
                        .unwrap_or_default(),
                ) && wanted(d)
            })
            .await
            .ok_or_else(|| self.fail(name, "nothing reached the app's webhook"))?;
        if let Err(why) = &delivery.verified {
            return Err(self.fail(name, format!("the app refused a delivery: {why}")));
        }
        let callback = &delivery.envelope["callback"];
        self.shown.insert(
            callback["context"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let bpp = callback["context"]["bpp_id"].as_str().unwrap_or_default();
        let event = delivery.envelope["event"].as_str().unwrap_or_default();
        let text = format!(
            "{} → {} → app webhook ({event}, HMAC verified): {}",
            self.timeline.name(bpp),
            self.bap,
            callback_summary(callback, None)
        );
        self.timeline.line(
            None,
            callback["context"]["action"].as_str().unwrap_or_default(),
            &text,
        );
        self.report.messages += 1;
        self.report.webhooks += 1;
        Ok(delivery)
    }
}

/// The farm's order: tests, home (or lab) collection at the farm, optionally a pickup slot and
/// billing details.
fn farm_order(items: &Value, slot_start: Option<&str>, billing: bool) -> Value {
    let mut stop = json!({
        "type": "start",
        "location": {"address": "Plot 7, Kanjhawala village", "area_code": PINCODE, "gps": "28.7370,77.0120"},
        "contact": {"phone": "+91-98100-22222", "email": "asha@example.org"},
        "person": {"name": "Asha Devi"}
    });
    if let Some(start) = slot_start {
        stop["time"] = json!({"range": {"start": start}});
    }
    let mut order = json!({
        "provider": {"id": LAB},
        "items": items,
        "fulfillments": [{"type": "home", "stops": [stop]}],
        "payments": [{"collected_by": "BPP", "type": "ON-FULFILLMENT"}]
    });
    if billing {
        order["billing"] = json!({"name": "Asha Devi", "phone": "+91-98100-22222",
            "email": "asha@example.org", "address": "Plot 7, Kanjhawala village"});
    }
    order
}
