//! The OpenAPI document: complete (every deployed route is in it), truthful (every operation
//! in it is served), and readable by a person at /docs.

use std::collections::BTreeSet;

use serde_json::Value;
use tally_tests::TestApp;

/// The (method, path) of every API route API Gateway sends to a function, read from the
/// `HttpApi` events of `template.yaml`. The HTML pages (`/`, `/i/...`, `/p/...`, `/assets/...`)
/// are a web site, not part of the JSON API the document describes.
fn deployed_routes() -> BTreeSet<(String, String)> {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap_or_else(|e| panic!("template.yaml: {e}"));
    let mut routes = BTreeSet::new();
    let mut method = None;
    for line in template.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("Method: ") {
            method = Some(m.trim_matches('"').to_lowercase());
        } else if let (Some(path), Some(m)) = (line.strip_prefix("Path: "), method.take()) {
            let path = path.trim_matches('"');
            if path.starts_with("/v1/") || path.starts_with("/docs") {
                routes.insert((m, path.to_owned()));
            }
        }
    }
    routes
}

async fn document(app: &TestApp) -> Value {
    let reply = app.get("/v1/openapi.json").send().await.expect(200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.body
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn every_deployed_route_is_documented() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let documented = operations(&doc);
    let deployed = deployed_routes();
    assert!(
        deployed.len() >= 20,
        "read {} routes from template.yaml",
        deployed.len()
    );
    let missing: Vec<_> = deployed
        .iter()
        .filter(|r| !documented.contains(*r))
        .collect();
    assert!(
        missing.is_empty(),
        "deployed but not documented: {missing:?}"
    );
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    let some_id = uuid::Uuid::new_v4().to_string();
    for (method, path) in operations(&doc) {
        let concrete = path
            .replace("{id}", &some_id)
            .replace("{token}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        let method: http::Method = method.to_uppercase().parse().unwrap_or(http::Method::GET);
        let reply = app.call(method.clone(), &concrete).send().await;
        let unrouted =
            reply.status.as_u16() == 405 || reply.body["detail"] == "No resource at this path.";
        assert!(
            !unrouted,
            "{method} {path} is documented but not served: {reply:#?}"
        );
    }
}

#[tokio::test]
async fn the_document_describes_errors_and_security() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert!(
        doc["components"]["schemas"]["ProblemDoc"].is_object()
            || doc["components"]["schemas"]["Problem"].is_object()
    );
    let vote = &doc["paths"]["/v1/polls/{id}/votes"]["post"];
    for status in ["201", "401", "403", "404", "409", "422", "429"] {
        assert!(vote["responses"][status].is_object(), "vote lacks {status}");
    }
    let page = app.get("/docs").send().await.expect(200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    app.get("/docs/docs.js").send().await.expect(200);
}

/// The served document is a file generated from every function's route registrations, so that
/// no function links the others' routes to describe them. A route changed without regenerating
/// the file fails here; `BLESS=1 cargo test -p tally-tests --test api openapi::` rewrites it.
#[tokio::test]
async fn the_served_document_is_generated_from_the_routes() {
    let app = TestApp::start().await;
    let generated = tally::http::openapi::document(app.stack.functions.all_routes())
        .unwrap_or_else(|e| panic!("the document does not serialise: {e}"));
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/openapi.json");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&file, &generated).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    let stored = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        stored == generated,
        "shared/openapi.json is stale: run `BLESS=1 cargo test -p tally-tests --test api openapi::` \
         and commit the file"
    );
    let served = app.get("/v1/openapi.json").send().await.expect(200);
    assert_eq!(
        served.body,
        serde_json::from_str::<Value>(&generated).unwrap_or_default()
    );
}
