//! The storage-call budget of each route, held the same whatever the amount of data: measured
//! with one poll, then again with 1,000 polls and 1,000 ballots.

use serde_json::json;
use tally_tests::{PASSWORD, TestApp};

/// (route, calls): the budget table of ARCHITECTURE.md, rate-limit counters included, on a
/// warm votes instance (its cached poll fresh, the poll's options locked by an earlier ballot):
/// results are the tally's read, a ballot its put and the voter's rate window.
const BUDGET: &[(&str, u64)] = &[
    ("GET /v1/polls/{id}", 1),
    ("GET /v1/polls", 1),
    ("GET /v1/polls/{id}/results", 1),
    ("POST /v1/polls/{id}/votes", 2),
    ("POST /v1/auth/login", 4),
    ("GET /v1/me", 1),
    // Rate window, poll with its counts, the transaction (request marker, job, the owner's
    // in-flight slot), the daily render quota.
    ("POST /v1/polls/{id}/chart", 4),
    // The poll with its counts, a page of guests, the list's counts with the page's ballots
    // (more guests: `guests.rs` measures the guest routes with 1 and 1,000 guests).
    ("GET /v1/polls/{id}/guests", 3),
    // The poll (owner check), one page of the poll-jobs index.
    ("GET /v1/polls/{id}/jobs", 2),
];

async fn measure(app: &TestApp, owner: &str, poll: &str) -> Vec<(&'static str, u64)> {
    // A ballot and a read first, as on a votes instance that is taking a poll's traffic.
    app.vote(&app.mint_token(), poll, &["o1"]).await.expect(201);
    app.results(owner, poll).await.expect(200);
    let mut measured = Vec::new();
    for (route, _) in BUDGET {
        let before = app.store().calls();
        let reply = match *route {
            "GET /v1/polls/{id}" => {
                app.get(&format!("/v1/polls/{poll}"))
                    .bearer(owner)
                    .send()
                    .await
            }
            "GET /v1/polls" => app.get("/v1/polls?limit=100").bearer(owner).send().await,
            "GET /v1/polls/{id}/results" => app.results(owner, poll).await,
            "POST /v1/polls/{id}/votes" => app.vote(&app.mint_token(), poll, &["o1"]).await,
            "POST /v1/auth/login" => app.login("owner@example.com", PASSWORD).await,
            // A new chart each time: the second measurement follows 1,000 new ballots, which
            // are part of the request's fingerprint.
            "POST /v1/polls/{id}/chart" => {
                app.post(&format!("/v1/polls/{poll}/chart"))
                    .bearer(owner)
                    .send()
                    .await
            }
            "GET /v1/polls/{id}/jobs" => {
                app.get(&format!("/v1/polls/{poll}/jobs?limit=100"))
                    .bearer(owner)
                    .send()
                    .await
            }
            "GET /v1/polls/{id}/guests" => {
                app.get(&format!("/v1/polls/{poll}/guests"))
                    .bearer(owner)
                    .send()
                    .await
            }
            _ => app.get("/v1/me").bearer(owner).send().await,
        };
        assert!(reply.status.is_success(), "{route}: {reply:#?}");
        measured.push((*route, app.store().calls() - before));
    }
    measured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_keeps_its_storage_budget_whatever_the_data_size() {
    let app = TestApp::start_with(
        &[("TALLY_RATE_LIMIT_WRITES", "5000/60")],
        tally_tests::Storage::Memory,
    )
    .await;
    // Time stands still, so the votes instance's cached poll outlives the slow requests.
    app.clock.freeze();
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    let small = measure(&app, &owner, &poll).await;
    assert_eq!(small, BUDGET.to_vec(), "with one poll");

    for i in 0..999 {
        app.create_poll(
            &owner,
            json!({ "question": format!("Q{i}"), "options": ["a", "b"] }),
        )
        .await;
    }
    for _ in 0..1000 {
        app.vote(&app.mint_token(), &poll, &["o2"])
            .await
            .expect(201);
    }
    let large = measure(&app, &owner, &poll).await;
    assert_eq!(large, BUDGET.to_vec(), "with 1,000 polls and 1,000 ballots");
}

/// A cold votes instance (or one whose cached poll is over a second old) reads the poll once:
/// one call more for a ballot or a read of the results, and only the first ballot an instance
/// takes on a poll locks its options (one more); the next ones are back to the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_cache_reads_the_poll_once() {
    let app = TestApp::start().await;
    app.clock.freeze();
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    let calls = |app: &TestApp| app.store().calls();
    let before = calls(&app);
    app.vote(&app.mint_token(), &poll, &["o1"])
        .await
        .expect(201);
    assert_eq!(
        calls(&app) - before,
        4,
        "rate window, poll, options lock, ballot"
    );
    let before = calls(&app);
    app.vote(&app.mint_token(), &poll, &["o1"])
        .await
        .expect(201);
    assert_eq!(calls(&app) - before, 2, "warm: rate window, ballot");
    app.clock.advance(time::Duration::seconds(2));
    let before = calls(&app);
    app.results(&owner, &poll).await.expect(200);
    assert_eq!(calls(&app) - before, 2, "expired: poll, tally");
    let before = calls(&app);
    app.vote(&app.mint_token(), &poll, &["o2"])
        .await
        .expect(201);
    assert_eq!(calls(&app) - before, 2, "fresh again: rate window, ballot");
}
