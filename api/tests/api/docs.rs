use std::collections::BTreeSet;

use testkit::spawn_app;

/// Every path the api serves, as the spec names it: clients use them as
/// written, so one that disappears or is renamed fails here.
const ROUTES: [&str; 24] = [
    "/api/dead-letters",
    "/api/dead-letters/redrive",
    "/api/events",
    "/api/events/batch",
    "/api/events/void",
    "/api/events/void/batch",
    "/api/health",
    "/api/keys",
    "/api/keys/{id}",
    "/api/prices",
    "/api/ready",
    "/api/tenants",
    "/api/tenants/{tenant}",
    "/api/tenants/{tenant}/alerts",
    "/api/tenants/{tenant}/slack-webhook",
    "/api/tenants/{tenant}/slack-webhook/test",
    "/api/tenants/{tenant}/webhook",
    "/api/tenants/{tenant}/webhook/rotate-secret",
    "/api/usage",
    "/api/usage/stream",
    "/api/usage/{tenant}",
    "/api/usage/{tenant}/check",
    "/api/usage/{tenant}/timeseries",
    "/v1/traces",
];

#[tokio::test]
async fn the_spec_lists_exactly_the_served_routes() {
    let app = spawn_app().await;
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        documented,
        BTreeSet::from(ROUTES),
        "the routes clients rely on"
    );
    let explorer = &paths["/api/events"]["get"];
    for status in ["200", "400", "401", "403"] {
        assert!(
            explorer["responses"].get(status).is_some(),
            "GET /api/events {status}"
        );
    }
    assert!(
        paths["/api/events"].get("post").is_some(),
        "ingest keeps its path"
    );
    // A path documented by two route groups would appear twice in the
    // JSON, and a reader keeps only one of them.
    let text = app.get("/openapi.json").await.text().await.unwrap();
    for path in paths.keys() {
        assert_eq!(text.matches(&format!("\"{path}\":")).count(), 1, "{path}");
    }
    let tokens = &spec["components"]["schemas"]["EventIn"]["properties"]["tokens"];
    assert_eq!(tokens["maximum"], 1_000_000_000.0);
}

/// What client generators need: a stable, unique `operationId` on every
/// operation, and no `allOf` around a lone `$ref` (openapi-python-client
/// drops what sits behind one). `clients/generated` generates a client
/// from the served spec and uses it.
#[tokio::test]
async fn every_operation_has_an_id_and_no_reference_hides_in_an_all_of() {
    let app = spawn_app().await;
    let (_, spec) = app.get_json("/openapi.json").await;
    let mut ids = BTreeSet::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"].as_str();
            let id = id.unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "{id} names two operations");
        }
    }
    assert_eq!(ids.len(), ROUTES.len() + 9, "every operation has its id");
    let mut wrapped = Vec::new();
    lone_references(&spec, &mut wrapped);
    assert!(
        wrapped.is_empty(),
        "references wrapped in allOf: {wrapped:?}"
    );
    let docs = html_page(&app, "/docs").await;
    assert!(
        docs.contains("\"operationId\""),
        "the docs show the served spec"
    );
}

/// Every `allOf` under `value` that holds one `$ref` and no schema of its
/// own (only annotations beside it).
fn lone_references<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a serde_json::Value>) {
    match value {
        serde_json::Value::Object(object) => {
            if let Some(parts) = object.get("allOf").and_then(|parts| parts.as_array()) {
                let schemas = parts.iter().filter(|part| {
                    part.get("$ref").is_some()
                        || part.get("properties").is_some()
                        || part.get("type").is_some()
                });
                if schemas.count() == 1 {
                    found.push(value);
                }
            }
            object
                .values()
                .for_each(|child| lone_references(child, found));
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|item| lone_references(item, found))
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_docs_are_an_html_page_served_by_the_binary() {
    let app = spawn_app().await;
    let html = html_page(&app, "/docs").await;
    assert!(html.contains("swagger"), "a Swagger UI page");
    for external in ["src=\"http", "href=\"http", "src='http", "href='http"] {
        assert!(!html.contains(external), "no CDN: found {external}");
    }
}

/// Scalar at `/reference`: one document with the spec and the script
/// inline, which its policy keeps from loading anything from elsewhere.
#[tokio::test]
async fn the_reference_is_one_self_contained_html_page() {
    let app = spawn_app().await;
    let response = app.get("/reference").await;
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in ["default-src 'none'", "connect-src 'self'", "font-src data:"] {
        assert!(policy.contains(directive), "{policy}");
    }
    let html = html_page(&app, "/reference").await;
    assert!(html.contains(r#"id="api-reference""#), "a Scalar page");
    assert!(
        html.contains("withDefaultFonts"),
        "Scalar loads no web fonts"
    );
    assert!(html.contains("/api/events/batch"), "the spec is inline");
    assert!(
        !html.contains("<script src") && !html.contains("<link"),
        "nothing external"
    );
}

/// The body of an HTML page the api serves.
async fn html_page(app: &testkit::TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert_eq!(response.status().as_u16(), 200, "{path}");
    let content_type = testkit::content_type(&response);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], true);
    assert_eq!(body["valkey"], true);
}

/// An address another process holds is named at start-up, with the
/// variable that sets it, instead of a bare "Address already in use".
#[tokio::test]
async fn a_busy_port_is_named_with_its_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = testkit::env::TestEnv::new().await;
    let mut config = testkit::app::api_config(
        env.valkey_args(),
        env.database_args(),
        "busy-port-admin-key",
    );
    config.api_addr = taken.local_addr().unwrap();
    let refused = api::startup::Application::build(config)
        .await
        .err()
        .expect("the port is taken");
    let message = format!("{refused:#}");
    assert!(
        message.contains(&taken.local_addr().unwrap().to_string()),
        "{message}"
    );
    assert!(message.contains("FLAGMETER_API_ADDR"), "{message}");
}
