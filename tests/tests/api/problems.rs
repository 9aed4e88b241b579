//! Bad input: every case answers with a clear problem+json, never a 500, and stores nothing.

use serde_json::{Value, json};
use tally_tests::{PASSWORD, TestApp};

/// (what, body, field that must be named in `errors`)
const POLL_CASES: &[(&str, &str, &str)] = &[
    (
        "empty question",
        r#"{"question":"  ","options":["a","b"]}"#,
        "question",
    ),
    (
        "long question",
        r#"{"question":"QQQ","options":["a","b"]}"#,
        "question",
    ),
    (
        "one option",
        r#"{"question":"q","options":["a"]}"#,
        "options",
    ),
    (
        "21 options",
        r#"{"question":"q","options":OPTIONS21}"#,
        "options",
    ),
    (
        "empty option",
        r#"{"question":"q","options":["a",""]}"#,
        "options",
    ),
    (
        "repeated option",
        r#"{"question":"q","options":["Yes","yes"]}"#,
        "options",
    ),
    (
        "long option",
        r#"{"question":"q","options":["a","OOO"]}"#,
        "options",
    ),
    (
        "deadline in the past",
        r#"{"question":"q","options":["a","b"],"closes_at":"2001-01-01T00:00:00Z"}"#,
        "closes_at",
    ),
    (
        "deadline not a time",
        r#"{"question":"q","options":["a","b"],"closes_at":"tomorrow"}"#,
        "closes_at",
    ),
    (
        "unknown visibility",
        r#"{"question":"q","options":["a","b"],"visibility":"secret"}"#,
        "visibility",
    ),
    (
        "unknown results mode",
        r#"{"question":"q","options":["a","b"],"results":"never"}"#,
        "results",
    ),
    (
        "zero choices",
        r#"{"question":"q","options":["a","b"],"max_choices":0}"#,
        "max_choices",
    ),
    (
        "more choices than options",
        r#"{"question":"q","options":["a","b"],"max_choices":3}"#,
        "max_choices",
    ),
];

fn expand(body: &str) -> String {
    let options21: Vec<String> = (0..21).map(|i| format!("o{i}")).collect();
    body.replace("QQQ", &"q".repeat(301))
        .replace("OOO", &"o".repeat(121))
        .replace("OPTIONS21", &json!(options21).to_string())
}

#[tokio::test]
async fn invalid_polls_name_the_field_and_store_nothing() {
    let app = TestApp::start().await;
    let ann = app.sign_up("ann@example.com").await;
    for (what, body, field) in POLL_CASES {
        let reply = app
            .post("/v1/polls")
            .bearer(&ann.access_token)
            .raw(expand(body))
            .send()
            .await;
        let reply = reply.expect_problem(422, "validation-failed");
        assert!(reply.body["errors"][field].is_array(), "{what}: {reply:#?}");
    }
    let list = app
        .get("/v1/polls")
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(list.body["items"], json!([]));
}

/// (what, path, body, status, problem type)
const REGISTER_CASES: &[(&str, &str, u16, &str)] = &[
    (
        "short password",
        r#"{"email":"a@example.com","password":"short"}"#,
        422,
        "validation-failed",
    ),
    (
        "long password",
        r#"{"email":"a@example.com","password":"PPP"}"#,
        422,
        "validation-failed",
    ),
    (
        "bad email",
        r#"{"email":"nobody","password":"long enough"}"#,
        422,
        "validation-failed",
    ),
    (
        "missing password",
        r#"{"email":"a@example.com"}"#,
        400,
        "malformed-request",
    ),
    ("not JSON", r#"{"email":"#, 400, "malformed-request"),
    (
        "wrong type",
        r#"{"email":42,"password":"long enough"}"#,
        400,
        "malformed-request",
    ),
    ("array body", r#"[]"#, 400, "malformed-request"),
];

#[tokio::test]
async fn invalid_registrations_are_problems() {
    let app = TestApp::start().await;
    for (what, body, status, slug) in REGISTER_CASES {
        let body = body.replace("PPP", &"p".repeat(129));
        let reply = app.post("/v1/auth/register").raw(body).send().await;
        assert_eq!(reply.status.as_u16(), *status, "{what}: {reply:#?}");
        reply.expect_problem(*status, slug);
    }
    let both = app
        .post("/v1/auth/register")
        .json(json!({ "email": "x", "password": "y" }))
        .send()
        .await
        .expect_problem(422, "validation-failed");
    assert!(both.body["errors"]["email"].is_array() && both.body["errors"]["password"].is_array());
}

#[tokio::test]
async fn framework_errors_are_problems_too() {
    let app = TestApp::start().await;
    let ann = app.sign_up("ann@example.com").await;
    app.get("/v1/nothing-here")
        .send()
        .await
        .expect_problem(404, "not-found");
    let reply = app
        .call(http::Method::PUT, "/v1/polls")
        .send()
        .await
        .expect_problem(405, "method-not-allowed");
    assert!(reply.header("allow").is_some());
    app.get("/v1/polls/not-a-uuid")
        .bearer(&ann.access_token)
        .send()
        .await
        .expect_problem(404, "not-found");
    // A body over the 64 KiB limit.
    let huge = json!({ "question": "q", "options": ["a", "b"], "pad": "x".repeat(70 * 1024) });
    let reply = app
        .post("/v1/polls")
        .bearer(&ann.access_token)
        .json(huge)
        .send()
        .await
        .expect_problem(413, "payload-too-large");
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("65536 bytes"), "{detail}");
    // A body that is not JSON at all.
    app.post("/v1/polls")
        .bearer(&ann.access_token)
        .header("content-type", "text/plain")
        .send()
        .await
        .expect_problem(415, "unsupported-media-type");
    // Unknown fields are refused rather than silently dropped, on every route with a body.
    let unknown = [
        (
            "/v1/polls",
            json!({ "question": "q", "options": ["a", "b"], "colour": "red" }),
        ),
        (
            "/v1/auth/register",
            json!({ "email": "bo@example.com", "password": PASSWORD, "name": "Bo" }),
        ),
        (
            "/v1/auth/login",
            json!({ "email": "ann@example.com", "password": PASSWORD, "remember": true }),
        ),
        (
            "/v1/auth/refresh",
            json!({ "refresh_token": ann.refresh_token, "scope": "all" }),
        ),
    ];
    for (path, body) in unknown {
        let reply = app
            .post(path)
            .bearer(&ann.access_token)
            .json(body)
            .send()
            .await;
        assert_eq!(
            reply.problem_type(),
            "/problems/malformed-request",
            "{path}"
        );
        reply.expect_problem(400, "malformed-request");
    }
    app.post("/v1/polls/00000000-0000-4000-8000-000000000000/votes")
        .bearer(&ann.access_token)
        .header("idempotency-key", "")
        .json(json!({ "choices": ["o1"] }))
        .send()
        .await
        .expect_problem(400, "bad-parameter");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_valid_one_is_kept() {
    let app = TestApp::start().await;
    let health = app.get("/v1/health").send().await.expect(200);
    assert_eq!(health.body, json!({ "status": "ok" }));
    assert!(
        health
            .header("x-request-id")
            .is_some_and(|id| id.len() >= 16)
    );
    let kept = app
        .get("/v1/health")
        .header("x-request-id", "trace-abc_123")
        .send()
        .await;
    assert_eq!(kept.header("x-request-id"), Some("trace-abc_123"));
    let replaced = app
        .get("/v1/health")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await;
    assert_ne!(replaced.header("x-request-id"), Some("bad id with spaces"));
    let missing = app.get("/v1/me").send().await;
    assert!(missing.header("x-request-id").is_some());
    assert_ne!(missing.body, Value::Null);
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::start_with(
        &[("TALLY_CORS_ORIGINS", "https://app.example.com")],
        tally_tests::Storage::Memory,
    )
    .await;
    let preflight = |origin: &str| {
        app.call(http::Method::OPTIONS, "/v1/polls")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    let refused = preflight("https://evil.example.com").await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let simple = app
        .get("/v1/health")
        .header("origin", "https://app.example.com")
        .send()
        .await;
    assert!(
        simple
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("x-request-id"))
    );
}
