//! Calls made more than once for one step: `paginate:` (a paged list walked to its end) and
//! `for_each:` (a call per element of a list). Both are bounded, and going past the bound is
//! an error, never a silent cut.

use schemars::JsonSchema;
use serde::Deserialize;

use super::values::Count;

/// How a paged list is walked. Every page is one call through the backend's transport (auth,
/// retries, `Retry-After`, idempotency keys as for any call).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaginateConfig {
    /// `page` (a page number), `offset` (an item offset), `next_link` (a URL to the next page,
    /// in the body at `next` or in a `Link: <...>; rel="next"` header) or `cursor` (a value at
    /// `next` sent back as the query parameter `param`).
    pub style: PageStyle,
    /// JSON pointer to the array of items in each page's body (`""`: the body is the array).
    pub items: String,
    /// The query parameter carrying the page number, offset or cursor (`page`, `offset`,
    /// `cursor` styles).
    #[serde(default)]
    pub param: Option<String>,
    /// The first page number (default 1) or offset (default 0).
    #[serde(default)]
    pub start: Option<Count>,
    /// Items per page: an offset's step (required for `offset`); a shorter page is the last.
    #[serde(default)]
    pub size: Option<Count>,
    /// A query parameter sending `size` to the backend.
    #[serde(default)]
    pub size_param: Option<String>,
    /// JSON pointer to the next link (`next_link`; absent: the `Link` header) or the cursor
    /// (`cursor`, required) in each page's body.
    #[serde(default)]
    pub next: Option<String>,
    /// An expression seeing `response` (the page's body) and `page` (its number, from 1):
    /// true makes this page the last.
    #[serde(default)]
    pub stop: Option<String>,
    /// The most pages fetched (default 20); a list with more is an error (`errors:` key
    /// `max_pages`), never cut short.
    #[serde(default)]
    pub max_pages: Option<Count>,
}

/// How the next page is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PageStyle {
    Page,
    Offset,
    NextLink,
    Cursor,
}

/// A call made once per element of a list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForEachConfig {
    /// An expression giving the list (`"{{ order.samples }}"`); null is an empty list.
    pub items: String,
    /// The name the call's templates read the element by (default `item`).
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
    /// Calls in flight at once (default 4, at most 32).
    #[serde(default)]
    pub concurrency: Option<Count>,
    /// The longest list served (default 100); a longer one is an error (`errors:` key
    /// `max_items`), never cut short.
    #[serde(default)]
    pub max_items: Option<Count>,
}
