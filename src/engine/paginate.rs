//! Runs a call with `paginate:`: one request per page, each through the same transport,
//! retries and idempotency rules as any call, until a page is the last. The step's result is
//! one JSON array holding every page's items in order. A list with more pages than
//! `max_pages` is an error (`errors:` key `max_pages`), never silently cut.

use minijinja::Value as JValue;
use serde_json::Value;

use super::{Call, EngineError};
use crate::backend::{BackendFailure, BackendRequest};
use crate::compile::{Paginate, Paging};

/// Fetches every page starting from `first` (the call as rendered) and concatenates their items.
pub(super) async fn run(
    call: &Call<'_, '_>,
    p: &Paginate,
    first: BackendRequest,
    ctx: &JValue,
) -> Result<Value, EngineError> {
    let mut request = first;
    match &p.paging {
        Paging::Page { param, start } => set_query(&mut request, param, start.to_string()),
        Paging::Offset { param, start, .. } => set_query(&mut request, param, start.to_string()),
        Paging::NextLink { .. } | Paging::Cursor { .. } => {}
    }
    let mut items = Vec::new();
    let mut page: u32 = 1;
    loop {
        let response = call.send(request.clone(), page).await?;
        let found = match response.body.pointer(&p.items) {
            Some(Value::Array(found)) => found.clone(),
            Some(Value::Null) | None if p.items.is_empty() && response.body.is_null() => Vec::new(),
            other => {
                let what = match other {
                    None => "nothing".to_string(),
                    Some(v) => format!("a {}", json_kind(v)),
                };
                return Err(call.failed(BackendFailure::InvalidResponse {
                    status: response.status,
                    detail: format!(
                        "page {page}: the items pointer `{}` finds {what}, not an array",
                        p.items
                    ),
                }));
            }
        };
        let count = found.len() as u64;
        items.extend(found);
        if stops(call, p, &response.body, page, ctx)? {
            return Ok(Value::Array(items));
        }
        let next = match &p.paging {
            Paging::Page { param, start } => numbered(p, count).then(|| {
                set_query(&mut request, param, (start + u64::from(page)).to_string());
            }),
            Paging::Offset { param, start, size } => numbered(p, count).then(|| {
                let offset = start + u64::from(page) * size;
                set_query(&mut request, param, offset.to_string());
            }),
            Paging::Cursor { param, pointer } => match response.body.pointer(pointer) {
                Some(Value::String(c)) if !c.is_empty() && count > 0 => {
                    set_query(&mut request, param, c.clone());
                    Some(())
                }
                Some(Value::Number(n)) if count > 0 => {
                    set_query(&mut request, param, n.to_string());
                    Some(())
                }
                _ => None,
            },
            Paging::NextLink { pointer } => {
                let link = match pointer {
                    Some(ptr) => response
                        .body
                        .pointer(ptr)
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    None => response.next_link.clone(),
                };
                match link.filter(|l| !l.trim().is_empty()) {
                    None => None,
                    Some(link) => {
                        let (path, query) =
                            follow(&call.backend.base_url, &link).map_err(|why| {
                                call.failed(BackendFailure::InvalidResponse {
                                    status: response.status,
                                    detail: format!("page {page}: next link `{link}` {why}"),
                                })
                            })?;
                        request.path = path;
                        request.query = query;
                        Some(())
                    }
                }
            }
        };
        if next.is_none() {
            return Ok(Value::Array(items));
        }
        if page >= p.max_pages {
            return Err(call.failed(BackendFailure::TooManyPages {
                max_pages: p.max_pages,
            }));
        }
        page += 1;
    }
}

/// Whether a numbered page (page or offset style) with `count` items may have a successor:
/// not when it is empty or shorter than a full page.
fn numbered(p: &Paginate, count: u64) -> bool {
    count > 0 && p.size.is_none_or(|size| count >= size)
}

/// The `stop` expression of the block, for this page.
fn stops(
    call: &Call<'_, '_>,
    p: &Paginate,
    body: &Value,
    page: u32,
    ctx: &JValue,
) -> Result<bool, EngineError> {
    let Some(stop) = &p.stop else {
        return Ok(false);
    };
    let ctx = super::ctx_with(
        ctx,
        &[
            ("response", crate::mapping::jvalue(body)),
            ("page", JValue::from(page)),
        ],
    );
    let rendered = stop
        .render(&call.flow.templates, &ctx)
        .map_err(EngineError::Template)?;
    Ok(truthy(&rendered))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "false",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Sets query parameter `name` to `value`, replacing any it had.
fn set_query(request: &mut BackendRequest, name: &str, value: String) {
    request.query.retain(|(k, _)| k != name);
    request.query.push((name.to_string(), value));
}

/// The path (under `base_url`) and query of a next link, which may be absolute or relative to
/// the base URL. A link leaving the backend's base URL is refused: the backend's credentials
/// are not sent elsewhere.
pub(crate) fn follow(
    base_url: &str,
    link: &str,
) -> Result<(String, Vec<(String, String)>), String> {
    let base = reqwest::Url::parse(&format!("{base_url}/"))
        .map_err(|e| format!("cannot be resolved: {e}"))?;
    let url = base
        .join(link.trim())
        .map_err(|e| format!("is not a URL: {e}"))?;
    let mut without_query = url.clone();
    without_query.set_query(None);
    without_query.set_fragment(None);
    let full = without_query.as_str();
    let Some(path) = full.strip_prefix(base_url) else {
        return Err(format!("is outside the backend's base URL {base_url}"));
    };
    let path = if path.is_empty() { "/" } else { path };
    if !path.starts_with('/') {
        return Err(format!("is outside the backend's base URL {base_url}"));
    }
    let query = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((path.to_string(), query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_resolve_under_the_base_url_only() {
        let base = "http://erp.test:8080/api/v1";
        assert_eq!(
            follow(base, "http://erp.test:8080/api/v1/tests?page=2&size=5").unwrap(),
            (
                "/tests".to_string(),
                vec![("page".into(), "2".into()), ("size".into(), "5".into())]
            )
        );
        assert_eq!(
            follow(base, "/api/v1/tests?after=x").unwrap().0,
            "/tests".to_string()
        );
        assert_eq!(follow(base, "tests?p=3").unwrap().0, "/tests");
        assert!(follow(base, "http://evil.test/api/v1/tests").is_err());
        assert!(follow(base, "/api/v10/tests").is_err());
        assert!(follow(base, "/other").is_err());
    }

    #[test]
    fn truthiness_of_a_stop_value() {
        assert!(truthy(&Value::Bool(true)));
        assert!(!truthy(&Value::Bool(false)));
        assert!(!truthy(&Value::Null));
        assert!(!truthy(&Value::String("false".into())));
    }
}
