//! `/reference`: the API reference in Scalar, beside Swagger UI at `/docs`.
//!
//! poem-openapi ships Scalar's script, so the page is one self-contained
//! HTML document: the spec and the script are inline, and nothing comes
//! from a CDN. Scalar is told not to load its web fonts, and a
//! Content-Security-Policy holds the page to that: it may run its inline
//! script and styles and call this api ("try it"), and fetch nothing else
//! (no fonts, no request proxy, no telemetry).

use poem::{Endpoint, Response, endpoint::make_sync, http::header};

/// What the page may load: inline script and styles, images and fonts as
/// `data:` URLs, requests to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src data:; font-src data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Scalar's settings, read from the element that holds the spec.
const CONFIGURATION: &str = r#"data-configuration='{"withDefaultFonts":false}'"#;

/// Serves `html` (poem-openapi's Scalar page for the spec) with Scalar's
/// settings and the policy.
pub fn endpoint(html: String) -> impl Endpoint {
    let marker = r#"id="api-reference""#;
    let html = html.replacen(marker, &format!("{marker} {CONFIGURATION}"), 1);
    make_sync(move |_| {
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .header(header::REFERRER_POLICY, "no-referrer")
            .body(html.clone())
    })
}
