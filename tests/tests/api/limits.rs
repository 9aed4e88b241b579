//! Rate limits: counted in the store, so they hold across instances; N+1 requests in a window
//! get 429 with `Retry-After`, and the next window lets requests through again.

use aws_sdk_dynamodb::types::AttributeValue;
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
    app.settle().await;
    assert_eq!(app.results(&owner, &polls[3]).await.body["total"], 1);

    app.clock.advance(time::Duration::seconds(
        i64::try_from(retry_after).unwrap_or(60),
    ));
    app.vote(&voter, &polls[3], &["o1"]).await.expect(201);
}

#[tokio::test]
async fn failed_logins_back_off_per_email_and_client_and_never_lock_the_owner_out() {
    // Two free failures, then 10 s, 20 s, and at most 40 s between tries.
    let app = TestApp::start_with(&[("TALLY_LOGIN_BACKOFF", "2/10/40")], Storage::Memory).await;
    // Time stands still but for the test's own steps: the waits are whole seconds after the
    // last failure, and a loaded machine's second between a failure and the next try would
    // show as a shorter wait.
    app.clock.freeze();
    let login = |ip: &'static str, password: &'static str| {
        app.post("/v1/auth/login")
            .from(ip)
            .json(json!({ "email": "ann@example.com", "password": password }))
            .send()
    };
    let wait_of = |reply: &tally_tests::Reply| -> i64 {
        reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    app.post("/v1/auth/register")
        .json(json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect(201);
    let guesser = "203.0.113.9";
    login(guesser, "wrong password")
        .await
        .expect_problem(401, "invalid-credentials");
    login(guesser, "wrong again")
        .await
        .expect_problem(401, "invalid-credentials");
    // Past the free failures the guesser must wait, even with the right password.
    let refused = login(guesser, PASSWORD)
        .await
        .expect_problem(429, "rate-limited");
    assert_eq!(wait_of(&refused), 10, "{refused:#?}");
    // The owner, elsewhere, is not kept out by the other client's failures.
    login("198.51.100.7", PASSWORD).await.expect(200);
    login("2001:db8:1:2::7", PASSWORD).await.expect(200);
    // An IPv6 client is counted by its /64, so rotating addresses inside it does not help.
    login("2001:db8:1:2::8", "wrong").await.expect(401);
    login("2001:db8:1:2::8", "wrong").await.expect(401);
    login("2001:db8:1:2::9", PASSWORD)
        .await
        .expect_problem(429, "rate-limited");
    // Each further failure doubles the wait, up to its cap.
    let mut waits = Vec::new();
    let mut wait = wait_of(&refused);
    for _ in 0..3 {
        app.clock.advance(time::Duration::seconds(wait));
        login(guesser, "still wrong").await.expect(401);
        let refused = login(guesser, PASSWORD)
            .await
            .expect_problem(429, "rate-limited");
        wait = wait_of(&refused);
        waits.push(wait);
    }
    assert_eq!(waits, [20, 40, 40]);
    // A backoff, not a lock: once the wait is over the right password signs in, and the
    // failures are forgotten, so one more typo costs no wait.
    app.clock.advance(time::Duration::seconds(wait));
    login(guesser, PASSWORD).await.expect(200);
    login(guesser, "typo").await.expect(401);
    login(guesser, PASSWORD).await.expect(200);
}

#[tokio::test]
async fn register_login_and_refresh_have_separate_budgets_per_client_address() {
    let vars = [
        ("TALLY_RATE_LIMIT_REGISTER_IP", "2/60"),
        ("TALLY_RATE_LIMIT_LOGIN_IP", "3/60"),
        ("TALLY_RATE_LIMIT_REFRESH_IP", "1/60"),
    ];
    let app = TestApp::start_with(&vars, Storage::Memory).await;
    let register = |i: u32, ip: &'static str| {
        app.post("/v1/auth/register")
            .from(ip)
            .json(json!({ "email": format!("user{i}@example.com"), "password": PASSWORD }))
            .send()
    };
    register(0, "203.0.113.9").await.expect(201);
    register(1, "203.0.113.9").await.expect(201);
    register(2, "203.0.113.9")
        .await
        .expect_problem(429, "rate-limited");
    // Another address has its own budget.
    register(2, "198.51.100.7").await.expect(201);
    // Sign-ups used none of the logins' budget, and logins none of the refreshes'.
    let mut tokens = Vec::new();
    for i in 0..3 {
        let reply = app
            .post("/v1/auth/login")
            .from("203.0.113.9")
            .json(json!({ "email": format!("user{i}@example.com"), "password": PASSWORD }))
            .send()
            .await
            .expect(200);
        tokens.push(reply.body["refresh_token"].clone());
    }
    app.login("user0@example.com", PASSWORD).await.expect(200);
    app.post("/v1/auth/login")
        .from("203.0.113.9")
        .json(json!({ "email": "user0@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect_problem(429, "rate-limited");
    let refresh = |token: serde_json::Value| {
        app.post("/v1/auth/refresh")
            .from("203.0.113.9")
            .json(json!({ "refresh_token": token }))
            .send()
    };
    refresh(tokens[0].clone()).await.expect(200);
    refresh(tokens[1].clone())
        .await
        .expect_problem(429, "rate-limited");
    app.clock.advance(time::Duration::seconds(60));
    refresh(tokens[1].clone()).await.expect(200);
}

/// Guests' attempts are counted per client address before the token is checked: random
/// tokens share one counter (one storage item) instead of making one each.
#[tokio::test]
async fn guest_attempts_are_counted_per_client_address_not_per_token() {
    let app = TestApp::start_with(&[("TALLY_RATE_LIMIT_GUEST_IP", "3/60")], Storage::Memory).await;
    let owner = app.mint_token();
    let poll = app.lunch_poll(&owner).await;
    let attempt = |n: u32, ip: &'static str| {
        app.post(&format!("/v1/polls/{poll}/votes"))
            .from(ip)
            .header("authorization", &format!("Invite random-token-{n:030}"))
            .json(json!({ "choices": ["o1"] }))
            .send()
    };
    for n in 0..3 {
        attempt(n, "203.0.113.9").await.expect(403);
    }
    attempt(3, "203.0.113.9")
        .await
        .expect_problem(429, "rate-limited");
    attempt(4, "198.51.100.7").await.expect(403);
    let counters = app
        .store()
        .client()
        .scan()
        .table_name(app.store().table())
        .filter_expression("SK = :rate AND begins_with(PK, :vote)")
        .expression_attribute_values(":rate", AttributeValue::S("RATE".into()))
        .expression_attribute_values(":vote", AttributeValue::S("RATE#vote#".into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .items
        .unwrap_or_default();
    assert_eq!(counters.len(), 2, "{counters:?}");
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
