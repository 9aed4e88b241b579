//! The sample events in `events/` (the files `cargo lambda invoke` and `sam local invoke`
//! use) fed through each function's Lambda handler: the same adapter `lambda_http::run`
//! wraps around the router, so an event that parses here parses on AWS.

use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{Value, json};
use tally_dev::Function;
use tally_tests::TestApp;

/// The placeholders the event files carry where a real deployment has live values.
const TOKEN_PLACEHOLDER: &str = "REPLACE_WITH_ACCESS_TOKEN";
const POLL_PLACEHOLDER: &str = "0b6c5d34-0f5f-4b8e-9d59-3c0ab3f0a001";
const JOB_PLACEHOLDER: &str = "5f0c8a4e-1b7d-4c39-9e2a-7d3b6a0c1f00";

/// SQS batches for the render function, delivered by `jobs::a_redelivered_chunk_...`.
const RENDER_EVENTS: &[&str] = &["render-invites-chunk.json"];

/// Stream batches for the count function, delivered below.
const COUNT_EVENTS: &[&str] = &["count-ballots.json"];

/// (event file, function that serves it, expected status)
const CASES: &[(&str, Function, u16)] = &[
    ("auth-register.json", Function::Auth, 201),
    ("auth-login.json", Function::Auth, 200),
    ("auth-me.json", Function::Auth, 200),
    ("polls-create.json", Function::Polls, 201),
    ("polls-list.json", Function::Polls, 200),
    ("polls-get.json", Function::Polls, 200),
    ("votes-cast.json", Function::Votes, 201),
    ("votes-results.json", Function::Votes, 200),
    ("jobs-invites.json", Function::Jobs, 202),
    ("jobs-get.json", Function::Jobs, 200),
    ("pages-guest.json", Function::Pages, 200),
];

fn event_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// Invokes `function`'s Lambda handler with an event and returns the API Gateway response.
async fn invoke(app: &TestApp, function: Function, event: &str) -> Value {
    let request: LambdaRequest =
        serde_json::from_str(event).unwrap_or_else(|e| panic!("event does not parse: {e}"));
    let mut handler = lambda_http::Adapter::from(app.stack.functions.app(function));
    let response = handler
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap_or_else(|e| match e {});
    serde_json::to_value(response).unwrap_or_default()
}

#[tokio::test]
async fn every_event_file_is_served_by_its_function() {
    let app = TestApp::start().await;
    let mut on_disk: Vec<String> = std::fs::read_dir(event_dir())
        .unwrap_or_else(|e| panic!("events/: {e}"))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = CASES
        .iter()
        .map(|(file, ..)| (*file).to_owned())
        .chain(RENDER_EVENTS.iter().map(|f| (*f).to_owned()))
        .chain(COUNT_EVENTS.iter().map(|f| (*f).to_owned()))
        .collect();
    covered.sort();
    assert_eq!(on_disk, covered, "every file in events/ needs a case here");

    // The cases run in order: the register event creates a user, the login event's answer
    // gives the token later events carry, and a poll is made for the events that name one.
    let mut token = String::new();
    let mut poll = String::new();
    let mut job = String::new();
    for (file, function, status) in CASES {
        let raw = std::fs::read_to_string(event_dir().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if raw.contains(POLL_PLACEHOLDER) && poll.is_empty() {
            poll = app.lunch_poll(&token).await;
        }
        let event = raw
            .replace(TOKEN_PLACEHOLDER, &token)
            .replace(POLL_PLACEHOLDER, &poll)
            .replace(JOB_PLACEHOLDER, &job);
        let response = invoke(&app, *function, &event).await;
        assert_eq!(
            response["statusCode"],
            json!(status),
            "{file}: {response:#}"
        );
        let headers = &response["headers"];
        assert!(headers["x-request-id"].is_string(), "{file}: {response:#}");
        if *file == "jobs-invites.json" {
            let body: Value =
                serde_json::from_str(response["body"].as_str().unwrap_or("{}")).unwrap_or_default();
            job = body["id"].as_str().unwrap_or_default().to_owned();
        }
        if *file == "auth-login.json" {
            let body: Value =
                serde_json::from_str(response["body"].as_str().unwrap_or("{}")).unwrap_or_default();
            token = body["access_token"].as_str().unwrap_or_default().to_owned();
        }
    }
}

#[tokio::test]
async fn a_function_does_not_serve_another_functions_routes() {
    let app = TestApp::start().await;
    let raw = std::fs::read_to_string(event_dir().join("votes-results.json")).unwrap_or_default();
    let response = invoke(&app, Function::Auth, &raw).await;
    assert_eq!(response["statusCode"], json!(404), "{response:#}");
}

/// The count function's sample (a tumbling-window stream batch of three new ballots, as
/// Lambda sends it) goes through the same deserialisation as `lambda_runtime` does, into
/// `Counter::handle`: the poll's results count the three, a redelivery adds nothing, and the
/// reply carries no window state.
#[tokio::test]
async fn the_stream_sample_is_counted_once_by_the_count_function() {
    let app = TestApp::start_counting_by_hand().await;
    let owner = app.mint_token();
    let poll = app.lunch_poll(&owner).await;
    let raw = std::fs::read_to_string(event_dir().join(COUNT_EVENTS[0]))
        .unwrap_or_else(|e| panic!("{e}"))
        .replace(POLL_PLACEHOLDER, &poll);
    for _ in 0..2 {
        let event: aws_lambda_events::event::dynamodb::TimeWindowEvent =
            serde_json::from_str(&raw).unwrap_or_else(|e| panic!("event does not parse: {e}"));
        let reply = app
            .counter
            .handle(event)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let reply = serde_json::to_value(reply).unwrap_or_default();
        assert_eq!(reply["state"], json!({}), "{reply:#}");
        assert_eq!(reply["batchItemFailures"], json!([]), "{reply:#}");
    }
    let results = app.results(&owner, &poll).await.expect(200);
    assert_eq!(results.body["total"], 3, "{:#}", results.body);
    assert_eq!(results.body["options"][1]["votes"], 2);
    assert_eq!(results.body["counted_through"], "2026-11-28T14:00:00.4Z");
}
