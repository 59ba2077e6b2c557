//! The live usage dashboard at `/`: one page, its stylesheet and its script,
//! compiled into the binary (no CDN, no external fonts: it works offline and
//! behind a firewall), fed by `GET /api/usage/stream` (see [`snapshot`]).
//!
//! The page builds every row with `textContent` and DOM calls, never by
//! parsing markup, and its Content-Security-Policy allows only this origin,
//! so a tenant name cannot inject anything.

pub mod snapshot;

use poem::{IntoResponse, Response, ResponseBuilder};
use poem_openapi::{
    ApiResponse, OpenApi,
    registry::{MetaResponse, MetaResponses, Registry},
};

const PAGE: &str = include_str!("page.html");
const STYLESHEET: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// Same origin only; no inline script or style markup.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One of the dashboard's files, with its headers.
pub struct Asset(Response);

impl Asset {
    fn builder(content_type: &str) -> ResponseBuilder {
        Response::builder()
            .content_type(content_type)
            .header("cache-control", "no-cache")
            .header("x-content-type-options", "nosniff")
    }
}

impl IntoResponse for Asset {
    fn into_response(self) -> Response {
        self.0
    }
}

impl ApiResponse for Asset {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "A file of the dashboard.",
                status: Some(200),
                status_range: None,
                content: vec![],
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

/// The page and its files. Served through the OpenAPI service (hidden from
/// the spec), because that service is nested at `/` and would otherwise
/// answer `/` itself.
pub struct DashboardApi;

#[OpenApi]
impl DashboardApi {
    /// The dashboard page.
    #[oai(path = "/", method = "get", hidden)]
    async fn page(&self) -> Asset {
        Asset(
            Asset::builder("text/html; charset=utf-8")
                .header("content-security-policy", CONTENT_SECURITY_POLICY)
                .header("referrer-policy", "no-referrer")
                .body(PAGE),
        )
    }

    /// Its stylesheet.
    #[oai(path = "/dashboard.css", method = "get", hidden)]
    async fn stylesheet(&self) -> Asset {
        Asset(Asset::builder("text/css; charset=utf-8").body(STYLESHEET))
    }

    /// Its script.
    #[oai(path = "/dashboard.js", method = "get", hidden)]
    async fn script(&self) -> Asset {
        Asset(Asset::builder("text/javascript; charset=utf-8").body(SCRIPT))
    }
}
