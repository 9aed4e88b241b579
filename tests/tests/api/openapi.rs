//! The OpenAPI document: complete (every deployed route is in it), truthful (every operation
//! in it is served), and readable by a person at /docs.

use std::collections::BTreeSet;

use serde_json::Value;
use tally_tests::TestApp;

/// The (method, path) of every API route API Gateway sends to a function, read from the
/// `HttpApi` events of `template.yaml`. The HTML pages (`/`, `/i/...`, `/p/...`, `/assets/...`)
/// and the documentation page (`/docs`, `/docs/{file}`) are a web site, not part of the JSON
/// API the document describes.
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
            if path.starts_with("/v1/") {
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
}

/// Every path of the document is an API operation under `/v1/`, and every operation has an
/// operationId of its own: code generators name functions and types after them.
#[tokio::test]
async fn operation_ids_are_unique_and_every_path_is_the_api() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    let mut seen = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        assert!(path.starts_with("/v1/"), "{path} is not an API path");
        for (method, operation) in item.as_object().into_iter().flatten() {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{method} {path} has operationId {id:?}"
            );
            assert!(seen.insert(id.to_owned()), "operationId {id} repeats");
        }
    }
}

/// The limits the server enforces are in the schemas, where a generator or a fuzzer sees them.
#[tokio::test]
async fn the_schemas_state_the_limits() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreatePoll"]["properties"];
    assert_eq!(create["question"]["maxLength"], 300);
    assert_eq!(create["options"]["minItems"], 2);
    assert_eq!(create["options"]["maxItems"], 20);
    assert_eq!(create["options"]["uniqueItems"], true);
    assert_eq!(schemas["OptionInput"]["oneOf"][0]["maxLength"], 120);
    assert_eq!(create["max_choices"]["minimum"], 1);
    assert_eq!(
        schemas["PatchBody"]["properties"]["max_choices"]["minimum"],
        1
    );
    let credentials = &schemas["Credentials"]["properties"];
    assert_eq!(credentials["email"]["format"], "email");
    assert_eq!(credentials["password"]["minLength"], 8);
    assert_eq!(credentials["password"]["maxLength"], 128);
    assert_eq!(
        schemas["InviteBody"]["properties"]["guests"]["maxItems"],
        10000
    );
    assert_eq!(
        schemas["CastBody"]["properties"]["choices"]["uniqueItems"],
        true
    );
    // Enums are enums, referenced or inline.
    let text = doc.to_string();
    for values in [
        r#"["public","invite"]"#,
        r#"["always","after_close"]"#,
        r#"["png","svg"]"#,
    ] {
        assert!(text.contains(values), "no enum {values}");
    }
    let mine = doc["paths"]["/v1/polls"]["get"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "mine")
        .cloned()
        .unwrap_or_default();
    assert_eq!(mine["schema"]["type"], "boolean", "{mine}");
}

/// A created poll's and job's responses link to the operations that take their id.
#[tokio::test]
async fn creating_responses_link_to_the_operations_that_use_the_id() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    let links = &doc["paths"]["/v1/polls"]["post"]["responses"]["201"]["links"];
    for op in [
        "getPoll",
        "updatePoll",
        "deletePoll",
        "closePoll",
        "castVote",
        "getResults",
    ] {
        assert!(
            links
                .as_object()
                .into_iter()
                .flatten()
                .any(|(_, l)| l["operationId"] == op),
            "no link to {op}: {links}"
        );
    }
    let job = &doc["paths"]["/v1/polls/{id}/qr"]["post"]["responses"];
    assert!(
        job.to_string().contains(r#""operationId":"getJob""#),
        "{job}"
    );
}

/// `/docs` and its files come from the API's own origin, under a policy that names no other
/// host; the other pages keep their strict policy. (The page's contents are checked in
/// `http::docs`'s unit tests.)
#[tokio::test]
async fn the_docs_page_is_served_from_this_origin() {
    let app = TestApp::start().await;
    for path in [
        "/docs",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let reply = app.get(path).send().await.expect(200);
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self';")
                && !csp.contains("unsafe-eval")
                && !csp.contains("http"),
            "{path}: {csp}"
        );
    }
    app.get("/docs/nothing.js").send().await.expect(404);
    let home = app.get("/").send().await.expect(200);
    assert_eq!(
        home.header("content-security-policy"),
        Some(tally::http::pages::content_security_policy(&app.config.live_realtime_url).as_str())
    );
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

/// JSON Schema's `integer` includes `2.0`, so the server takes a whole number written with a
/// fraction (schemathesis found these refused with a 400) and still refuses `1.5` by name.
#[tokio::test]
async fn whole_numbers_written_as_floats_are_integers() {
    let app = TestApp::start().await;
    let owner = app.sign_up("floats@example.com").await;
    let body = |max: Value| serde_json::json!({"question": "Q?", "options": ["a", "b"], "max_choices": max});
    let poll = app
        .create_poll(&owner.access_token, body(serde_json::json!(2.0)))
        .await;
    assert_eq!(poll.body["max_choices"], 2);
    let id = poll.body["id"].as_str().unwrap_or_default().to_owned();
    app.patch(&format!("/v1/polls/{id}"))
        .bearer(&owner.access_token)
        .json(serde_json::json!({"max_choices": 1.0}))
        .send()
        .await
        .expect(200);
    let refused = app
        .post("/v1/polls")
        .bearer(&owner.access_token)
        .json(body(serde_json::json!(1.5)))
        .send()
        .await
        .expect(400);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("whole number"),
        "{refused:#?}"
    );
}
