//! The console's page, style and script, built into the binary: nothing is fetched from any
//! other host, and there is no build step (plain JavaScript). Every console answer carries a
//! strict Content-Security-Policy: scripts, styles and connections from this origin only, no
//! inline script, no framing.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// The policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The headers every console answer carries.
pub fn security_headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// The console's page, with the caller's CSRF token in a `<meta>` element for its script.
pub fn index(csrf: &str) -> Response {
    html(INDEX.replace("{{csrf}}", csrf))
}

/// The login form (with `problem` shown when a token was refused).
pub fn login(problem: Option<&str>) -> Response {
    let note = problem.map_or(String::new(), |p| {
        format!("<p class=\"problem\">{}</p>", escape(p))
    });
    let mut r = html(LOGIN.replace("{{problem}}", &note));
    if problem.is_some() {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    r
}

/// A static asset by name.
pub fn asset(name: &str) -> Response {
    let (body, kind) = match name {
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "console.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_asset_names_another_host_or_runs_inline() {
        for text in [INDEX, LOGIN, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        for page in [INDEX, LOGIN] {
            assert!(
                !page.contains("<script>"),
                "inline script is refused by the CSP"
            );
            assert!(
                !page.contains("style=\""),
                "inline style is refused by the CSP"
            );
            for handler in ["onclick=", "onload=", "onsubmit=", "oninput=", "onchange="] {
                assert!(
                    !page.contains(handler),
                    "inline handlers are refused by the CSP"
                );
            }
        }
        assert!(!SCRIPT.contains("eval(") && !SCRIPT.contains("innerHTML"));
    }
}
