//! Closing a poll while ballots pour in. The owner's close is one write of the poll; a votes
//! instance on Lambda checks ballots against its cached poll, so it may accept ballots for up
//! to `CLOSE_GRACE` (the cache's lifetime) after the close. Those ballots were answered 201 and
//! must be counted; after the grace, none is accepted.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use futures::future::join_all;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally::clock::SharedClock;
use tally::dynamo::DynamoStore;
use tally::http::cache::CLOSE_GRACE;
use tally_dev::{Function, Functions};
use tally_tests::TestApp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower::ServiceExt;

/// A votes function of its own over the app's table, as one Lambda instance is: its cache of
/// polls is its own, so the owner's writes through the app reach it only when its entry
/// expires.
fn separate_votes_instance(app: &TestApp) -> Router {
    let store = DynamoStore::new(app.store().client().clone(), app.config.table.clone());
    let clock: SharedClock = Arc::new(app.clock.clone());
    Functions::new(
        &app.config,
        Arc::new(store),
        Arc::new(app.stack.blobs.clone()),
        Arc::new(app.stack.queue.clone()),
        clock,
        tally_dev::functions::Keys {
            jwt: &app.stack.keys,
            invite: &app.stack.invite_key,
            live: &app.stack.live_key,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .app(Function::Votes)
}

/// A ballot through `router`: its status and body.
async fn vote_on(router: &Router, token: &str, poll: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = Request::post(format!("/v1/polls/{poll}/votes"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request
        .body(Body::from(json!({ "choices": ["o1"] }).to_string()))
        .unwrap_or_else(|e| panic!("{e}"));
    let response = router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap_or_default(), &Rfc3339)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_across_a_close_counts_every_201_and_nothing_after_the_grace() {
    const BURST: usize = 120;
    let app = Arc::new(TestApp::start().await);
    // Only `advance` moves time: the instance's cached poll is exactly as old as the test says.
    app.clock.freeze();
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    let instance = separate_votes_instance(&app);
    // The instance's first ballot reads the poll (open) into its cache.
    let first_voter = app.mint_token();
    let (status, first) = vote_on(&instance, &first_voter, &poll, Some("first")).await;
    assert_eq!(status, 201, "{first}");

    // The burst, with the owner's close in the middle of it.
    let voters: Vec<String> = (0..BURST).map(|_| app.mint_token()).collect();
    let ballots = voters.iter().map(|t| vote_on(&instance, t, &poll, None));
    let close = async {
        tokio::task::yield_now().await;
        app.post(&format!("/v1/polls/{poll}/close"))
            .bearer(&owner)
            .send()
            .await
            .expect(200)
    };
    let (outcomes, closed) = futures::join!(join_all(ballots), close);
    let closed_at = time_of(&closed.body["updated_at"]);
    let accepted: Vec<&Value> = outcomes
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    for (status, body) in &outcomes {
        assert!(*status == 201 || *status == 409, "{status}: {body}");
    }
    // Everything accepted was accepted within the grace after the close, if after it at all.
    for ballot in &accepted {
        assert!(
            time_of(&ballot["voted_at"]) < closed_at + CLOSE_GRACE,
            "{ballot}"
        );
    }
    // Where the owner's write is seen at once (the app's own votes function shares the polls
    // function's cache), a ballot after the close is refused at once.
    app.vote(&app.mint_token(), &poll, &["o1"])
        .await
        .expect_problem(409, "poll-closed");

    // Past the grace, the instance refuses every new ballot...
    app.clock
        .advance(CLOSE_GRACE + time::Duration::milliseconds(1));
    for _ in 0..20 {
        let (status, body) = vote_on(&instance, &app.mint_token(), &poll, None).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["type"], "/problems/poll-closed", "{body}");
    }
    // ...but a voter retrying a ballot that got in gets it replayed.
    let (status, replay) = vote_on(&instance, &first_voter, &poll, Some("first")).await;
    assert_eq!((status, &replay), (201, &first));

    // Every 201 is counted, and nothing else.
    app.settle().await;
    let results = app.results(&owner, &poll).await.expect(200);
    assert_eq!(results.body["status"], "closed");
    assert_eq!(
        results.body["total"],
        json!(accepted.len() + 1),
        "the first ballot and the burst's 201s"
    );
}
