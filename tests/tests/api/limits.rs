//! Rate limits: counted in the store, so they hold across instances; N+1 requests in a window
//! get 429 with `Retry-After`, and the next window lets requests through again.

use serde_json::json;
use tally_tests::{PASSWORD, Storage, TestApp};

#[tokio::test]
async fn ballots_are_limited_per_voter_and_the_next_window_passes() {
    let app = TestApp::start_with(&[("TALLY_RATE_LIMIT_VOTES", "3/60")], Storage::Memory).await;
    let owner = app.mint_token();
    let mut polls = Vec::new();
    for _ in 0..5 {
        polls.push(app.lunch_poll(&owner).await);
    }
    let voter = app.mint_token();
    for (i, poll) in polls.iter().take(3).enumerate() {
        let reply = app.vote(&voter, poll, &["o1"]).await.expect(201);
        assert_eq!(reply.header("ratelimit-policy"), Some("3;w=60"));
        let remaining = format!("remaining={}", 2 - i);
        assert!(
            reply
                .header("ratelimit")
                .is_some_and(|h| h.contains(&remaining)),
            "{reply:#?}"
        );
    }
    let limited = app
        .vote(&voter, &polls[3], &["o1"])
        .await
        .expect_problem(429, "rate-limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry_after), "{limited:#?}");
    // Another voter is not affected, and nothing was counted for the refused ballot.
    app.vote(&app.mint_token(), &polls[3], &["o1"])
        .await
        .expect(201);
    assert_eq!(app.results(&owner, &polls[3]).await.body["total"], 1);

    app.clock.advance(time::Duration::seconds(
        i64::try_from(retry_after).unwrap_or(60),
    ));
    app.vote(&voter, &polls[3], &["o1"]).await.expect(201);
}

#[tokio::test]
async fn logins_are_limited_per_email_whatever_the_password() {
    let app = TestApp::start_with(
        &[("TALLY_RATE_LIMIT_LOGIN_EMAIL", "2/300")],
        Storage::Memory,
    )
    .await;
    app.sign_up("ann@example.com").await; // one login
    app.login("ann@example.com", "wrong password")
        .await
        .expect_problem(401, "invalid-credentials");
    // The third attempt in the window is refused even with the right password: guessing
    // cannot continue at any pace.
    app.login("ann@example.com", PASSWORD)
        .await
        .expect_problem(429, "rate-limited");
    app.login("ANN@example.com", PASSWORD)
        .await
        .expect_problem(429, "rate-limited");
    app.clock.advance(time::Duration::seconds(300));
    app.login("ann@example.com", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn auth_routes_are_limited_per_client_address() {
    let app = TestApp::start_with(&[("TALLY_RATE_LIMIT_AUTH_IP", "4/60")], Storage::Memory).await;
    for i in 0..4 {
        app.post("/v1/auth/register")
            .json(json!({ "email": format!("user{i}@example.com"), "password": PASSWORD }))
            .send()
            .await
            .expect(201);
    }
    app.login("user0@example.com", PASSWORD)
        .await
        .expect_problem(429, "rate-limited");
    app.clock.advance(time::Duration::seconds(60));
    app.login("user0@example.com", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn writes_are_limited_per_user() {
    let app = TestApp::start_with(&[("TALLY_RATE_LIMIT_WRITES", "2/60")], Storage::Memory).await;
    let owner = app.mint_token();
    app.lunch_poll(&owner).await;
    app.lunch_poll(&owner).await;
    app.post("/v1/polls")
        .bearer(&owner)
        .json(json!({ "question": "Third?", "options": ["a", "b"] }))
        .send()
        .await
        .expect_problem(429, "rate-limited");
    // Reads are not limited.
    app.get("/v1/polls").bearer(&owner).send().await.expect(200);
}

#[tokio::test]
async fn limits_can_be_switched_off() {
    let vars = [
        ("TALLY_RATE_LIMITS", "off"),
        ("TALLY_RATE_LIMIT_VOTES", "1/60"),
    ];
    let app = TestApp::start_with(&vars, Storage::Memory).await;
    let owner = app.mint_token();
    let voter = app.mint_token();
    for _ in 0..3 {
        let poll = app.lunch_poll(&owner).await;
        let reply = app.vote(&voter, &poll, &["o1"]).await.expect(201);
        assert!(reply.header("ratelimit").is_none());
    }
}
