//! The mapping test file (`flows/tests/*.yaml`), as written. Unknown keys are errors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::dry_run::fixtures::Fixture;

/// One mapping test: an action of a flow run against a request and canned backend answers,
/// and what its `on_*` callback must be; or (`action: ultra`) the flow's `ultra:` mapping run
/// on an order event, and the OMS order it must make (or its refusal).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "beckn-adapter mapping test",
    extend("oneOf" = [{"required": ["request"]}, {"required": ["request_file"]}])
)]
pub struct TestFile {
    /// What the test shows; default: the file name.
    #[serde(default)]
    pub name: Option<String>,
    /// The flow under test, by its `name:` (default of which is its file name).
    pub flow: String,
    /// The Beckn action run: `search`, `select`, `init`, `confirm`, `status`, `track`,
    /// `cancel`, `update`, `rating` or `support`; or `ultra`: the flow's `ultra:` mapping (the
    /// OMS order Flipkart Ultra gets), run on `request`, an order event.
    pub action: String,
    /// The incoming request. Context fields left out get valid defaults. For `action: ultra`,
    /// the order event: an `on_*` callback carrying an order, as received or sent (taken as
    /// it is; its `context.action` says which event it is).
    #[serde(default)]
    #[schemars(with = "Option<RequestSchema>")]
    pub request: Option<Value>,
    /// A JSON or YAML file holding the request, relative to this file.
    #[serde(default)]
    pub request_file: Option<String>,
    /// A fixture file (step name -> answer), relative to this file. Entries of `fixtures` win
    /// over the file's.
    #[serde(default)]
    pub fixtures_file: Option<String>,
    /// Canned backend answers, by the name of the step that calls.
    #[serde(default)]
    pub fixtures: BTreeMap<String, Fixture>,
    /// `action: ultra` only: the identity token of the order's Ultra user (default
    /// `IDT-TEST`), as `user.identity_token` in the mapping.
    #[serde(default)]
    pub identity_token: Option<String>,
    /// What the transaction remembered before this action, as its templates and scripts
    /// read it (`transaction.*`, `erp_order_id` included); default: nothing.
    #[serde(default)]
    pub transaction: Option<serde_json::Map<String, Value>>,
    /// The callback expected. Without `expect.error`, the callback must carry no error.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Values the callback must hold, by path into it (`message.order.quote.price.value`,
    /// `context.action`, `error.code`); for `action: ultra`, into the OMS order
    /// (`orderState`, `reverseTransaction`). Objects are compared partially, and null means
    /// absent.
    #[serde(default)]
    pub expect_paths: BTreeMap<String, Value>,
}

/// The expected callback (or, for `action: ultra`, OMS order).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The whole `message`, compared exactly.
    #[serde(default)]
    pub message: Option<Value>,
    /// The callback answers with this Beckn error.
    #[serde(default)]
    pub error: Option<ExpectedError>,
    /// `action: ultra`: the whole OMS order, as checked and sent, compared exactly.
    #[serde(default)]
    pub order: Option<Value>,
    /// `action: ultra`: the order event makes no OMS order: the mapping fails or its order
    /// breaks Ultra's rules, with a reason containing this text.
    #[serde(default)]
    pub refused: Option<String>,
    /// `action: ultra`: the mapping renders `null`: nothing is sent to Ultra.
    #[serde(default)]
    pub nothing: bool,
}

/// A Beckn error the callback must carry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    /// The Beckn error code (`30004`); numbers are read as text.
    #[schemars(with = "CodeSchema")]
    #[serde(deserialize_with = "code_text")]
    pub code: String,
    /// The error's message, exactly (left out: not compared).
    #[serde(default)]
    pub message: Option<String>,
}

/// YAML reads `code: 30004` as a number; a Beckn code is text either way.
fn code_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::N(n) => n.to_string(),
        Raw::S(s) => s,
    })
}

/// Schema only: a Beckn request as a test gives it.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // a schema-only type
struct RequestSchema {
    /// Fields given here replace the defaults (domain, action, version, bap_id, bap_uri,
    /// bpp_id, bpp_uri, transaction_id, message_id, timestamp, ttl).
    context: Option<serde_json::Map<String, Value>>,
    /// The request's `message`.
    message: Option<Value>,
}

/// Schema only: an error code as text or a number.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // a schema-only type
enum CodeSchema {
    Text(String),
    Number(u64),
}

/// The JSON Schema of mapping test files.
pub fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    crate::config::json_schema::tidy(generator.into_root_schema_for::<TestFile>().to_value())
}
