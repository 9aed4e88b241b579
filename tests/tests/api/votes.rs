//! Ballots and results.

use serde_json::json;
use tally_tests::TestApp;

async fn a_voter_votes_once_and_results_count_it(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let ballot = app.vote(&ann.access_token, &id, &["o2"]).await.expect(201);
    assert_eq!(ballot.body["poll_id"], id.as_str());
    assert_eq!(ballot.body["choices"], json!(["o2"]));
    assert!(ballot.body["voted_at"].is_string());
    app.vote(&ann.access_token, &id, &["o1"])
        .await
        .expect_problem(409, "already-voted");
    let results = app
        .settled_results(&ann.access_token, &id)
        .await
        .expect(200);
    assert_eq!(results.body["total"], 1);
    assert_eq!(
        results.body["options"],
        json!([{ "id": "o1", "text": "Pizza", "votes": 0 }, { "id": "o2", "text": "Soup", "votes": 1 }])
    );
    assert!(results.body["as_of"].is_string());
}

async fn a_retry_with_the_same_idempotency_key_replays_the_first_answer(app: TestApp) {
    let voter = app.mint_token();
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let send = |key: &str, choice: &str| {
        app.post(&format!("/v1/polls/{id}/votes"))
            .bearer(&voter)
            .header("idempotency-key", key)
            .json(json!({ "choices": [choice] }))
            .send()
    };
    let first = send("k-1", "o1").await.expect(201);
    let replay = send("k-1", "o1").await.expect(201);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    send("k-1", "o2")
        .await
        .expect_problem(422, "idempotency-key-reused");
    send("k-2", "o1").await.expect_problem(409, "already-voted");
    let results = app.settled_results(&voter, &id).await.expect(200);
    assert_eq!(results.body["total"], 1);
}

async fn invalid_choices_are_refused_and_nothing_is_counted(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let voter = app.mint_token();
    for choices in [
        vec![],
        vec!["o3"],
        vec!["o1", "o2"],
        vec!["o1", "o1"],
        vec!["'; DROP TABLE"],
    ] {
        let reply = app
            .vote(&voter, &id, &choices)
            .await
            .expect_problem(422, "validation-failed");
        assert!(reply.body["errors"]["choices"].is_array(), "{reply:#?}");
    }
    app.post(&format!("/v1/polls/{id}/votes"))
        .bearer(&voter)
        .json(json!({ "choices": "o1" }))
        .send()
        .await
        .expect_problem(400, "malformed-request");
    let results = app.settled_results(&voter, &id).await.expect(200);
    assert_eq!(results.body["total"], 0);
    // The voter can still vote properly afterwards.
    app.vote(&voter, &id, &["o1"]).await.expect(201);
}

async fn multiple_choice_ballots_count_each_choice_once(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let poll = app
        .create_poll(&ann.access_token, json!({ "question": "Toppings?", "options": ["Ham", "Olives", "Basil"], "max_choices": 2 }))
        .await;
    let id = poll.body["id"].as_str().unwrap_or_default();
    app.vote(&app.mint_token(), id, &["o1", "o3"])
        .await
        .expect(201);
    app.vote(&app.mint_token(), id, &["o3"]).await.expect(201);
    let results = app.settled_results(&ann.access_token, id).await.expect(200);
    assert_eq!(results.body["total"], 2);
    let votes: Vec<_> = results.body["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o["votes"].clone())
        .collect();
    assert_eq!(votes, [json!(1), json!(0), json!(2)]);
}

async fn the_deadline_is_checked_when_the_ballot_is_written(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let closes_at = (app.now() + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let poll = app
        .create_poll(
            &ann.access_token,
            json!({ "question": "Soon?", "options": ["a", "b"], "closes_at": closes_at }),
        )
        .await;
    let id = poll.body["id"].as_str().unwrap_or_default();
    app.vote(&app.mint_token(), id, &["o1"]).await.expect(201);
    app.clock.advance(time::Duration::minutes(11));
    app.vote(&app.mint_token(), id, &["o1"])
        .await
        .expect_problem(409, "poll-closed");
    let read = app
        .get(&format!("/v1/polls/{id}"))
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(read.body["status"], "closed");
    assert_eq!(
        app.settled_results(&ann.access_token, id).await.body["total"],
        1
    );
}

async fn results_after_close_are_hidden_from_others_until_then(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let poll = app
        .create_poll(&ann.access_token, json!({ "question": "Secret ballot?", "options": ["a", "b"], "results": "after_close" }))
        .await;
    let id = poll.body["id"].as_str().unwrap_or_default();
    let voter = app.mint_token();
    app.vote(&voter, id, &["o2"]).await.expect(201);
    app.results(&voter, id)
        .await
        .expect_problem(403, "forbidden");
    app.results(&ann.access_token, id).await.expect(200);
    app.post(&format!("/v1/polls/{id}/close"))
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    let results = app.settled_results(&voter, id).await.expect(200);
    assert_eq!(results.body["status"], "closed");
    assert_eq!(results.body["options"][1]["votes"], 1);
}

async fn results_take_one_storage_call_and_a_ballot_three_whatever_the_count(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let calls = |app: &TestApp| app.store().calls();

    let before = calls(&app);
    app.results(&ann.access_token, &id).await.expect(200);
    assert_eq!(calls(&app) - before, 1, "results with no ballots");

    for _ in 0..200 {
        let voter = app.mint_token();
        let before = calls(&app);
        app.vote(&voter, &id, &["o1"]).await.expect(201);
        assert_eq!(
            calls(&app) - before,
            3,
            "a ballot: poll, transaction, rate counter"
        );
        let before = calls(&app);
        app.vote(&voter, &id, &["o1"]).await.expect(409);
        assert_eq!(
            calls(&app) - before,
            3,
            "a duplicate ballot: the first comes back with the cancellation"
        );
    }
    let before = calls(&app);
    let results = app
        .settled_results(&ann.access_token, &id)
        .await
        .expect(200);
    assert_eq!(calls(&app) - before, 1, "results with 200 ballots");
    assert_eq!(results.body["total"], 200);
}

async fn results_carry_an_etag_and_answer_304_until_they_change(app: TestApp) {
    let owner = app.mint_token();
    let poll = app.lunch_poll(&owner).await;
    let first = app.results(&owner, &poll).await.expect(200);
    let etag = first.header("etag").unwrap_or_default().to_owned();
    assert!(etag.starts_with('"'), "{first:#?}");
    assert_eq!(first.header("cache-control"), Some("private, no-cache"));
    let conditional = |tag: String| {
        app.get(&format!("/v1/polls/{poll}/results"))
            .bearer(&owner)
            .header("if-none-match", &tag)
            .send()
    };
    // Unchanged counts keep the tag even as time passes (`as_of` is not part of it).
    app.clock.advance(time::Duration::seconds(5));
    let unchanged = conditional(etag.clone()).await.expect(304);
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));
    conditional(format!("\"other\", W/{etag}"))
        .await
        .expect(304);
    conditional("\"other\"".into()).await.expect(200);
    app.vote(&app.mint_token(), &poll, &["o1"])
        .await
        .expect(201);
    app.settle().await;
    let moved = conditional(etag.clone()).await.expect(200);
    assert_eq!(moved.body["total"], 1);
    assert_ne!(moved.header("etag"), Some(etag.as_str()));
}

tally_tests::on_every_backend!(
    results_carry_an_etag_and_answer_304_until_they_change,
    a_voter_votes_once_and_results_count_it,
    a_retry_with_the_same_idempotency_key_replays_the_first_answer,
    invalid_choices_are_refused_and_nothing_is_counted,
    multiple_choice_ballots_count_each_choice_once,
    the_deadline_is_checked_when_the_ballot_is_written,
    results_after_close_are_hidden_from_others_until_then,
    results_take_one_storage_call_and_a_ballot_three_whatever_the_count,
);
