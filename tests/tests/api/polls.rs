//! Polls: create, read, list, patch with If-Match, delete, close, and owner-only writes.

use serde_json::{Value, json};
use tally_tests::TestApp;

async fn create_applies_defaults_and_answers_with_location_and_etag(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let reply = app
        .create_poll(
            &ann.access_token,
            json!({ "question": " Lunch? ", "options": ["Pizza", {"text": "Soup"}] }),
        )
        .await;
    let id = reply.body["id"].as_str().unwrap_or_default();
    assert_eq!(
        reply.header("location"),
        Some(format!("/v1/polls/{id}").as_str())
    );
    assert_eq!(reply.header("etag"), Some("\"v1\""));
    let body = &reply.body;
    assert_eq!(body["question"], "Lunch?");
    assert_eq!(
        body["options"],
        json!([{ "id": "o1", "text": "Pizza" }, { "id": "o2", "text": "Soup" }])
    );
    assert_eq!(
        (
            &body["status"],
            &body["visibility"],
            &body["results"],
            &body["max_choices"],
            &body["closes_at"]
        ),
        (
            &json!("open"),
            &json!("public"),
            &json!("always"),
            &json!(1),
            &Value::Null
        )
    );
    assert_eq!(body["owner_id"], ann.user_id.as_str());
    let read = app
        .get(&format!("/v1/polls/{id}"))
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(read.body, reply.body);
    assert_eq!(read.header("etag"), Some("\"v1\""));
}

async fn listing_pages_through_my_polls_newest_first(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let mut created = Vec::new();
    for i in 0..7 {
        let reply = app
            .create_poll(
                &ann.access_token,
                json!({ "question": format!("Q{i}"), "options": ["a", "b"] }),
            )
            .await;
        created.push(reply.body["id"].as_str().unwrap_or_default().to_owned());
        app.clock.advance(time::Duration::milliseconds(5));
    }
    app.lunch_poll(&bob.access_token).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/polls?mine=true&limit=3&cursor={c}"),
            None => "/v1/polls?mine=true&limit=3".to_owned(),
        };
        let page = app
            .get(&path)
            .bearer(&ann.access_token)
            .send()
            .await
            .expect(200);
        pages += 1;
        for item in page.body["items"].as_array().into_iter().flatten() {
            seen.push(item["id"].as_str().unwrap_or_default().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(
        seen, created,
        "every poll of Ann once, newest first, none of Bob's"
    );
    assert_eq!(pages, 3);
}

async fn a_list_page_is_one_storage_call_whatever_the_number_of_polls(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    for i in 0..30 {
        app.create_poll(
            &ann.access_token,
            json!({ "question": format!("Q{i}"), "options": ["a", "b"] }),
        )
        .await;
    }
    let before = app.store().calls();
    let page = app
        .get("/v1/polls?limit=25")
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(app.store().calls() - before, 1);
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(25));
}

async fn bad_list_parameters_are_problems(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "cursor=%%%",
        "cursor=bm90LWpzb24",
        "mine=false",
    ] {
        app.get(&format!("/v1/polls?{query}"))
            .bearer(&ann.access_token)
            .send()
            .await
            .expect_problem(400, "bad-parameter");
    }
}

async fn patch_honours_if_match_and_bumps_the_etag(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let path = format!("/v1/polls/{id}");
    let patched = app
        .patch(&path)
        .bearer(&ann.access_token)
        .header("if-match", "\"v1\"")
        .json(json!({ "question": "Dinner?", "max_choices": 2 }))
        .send()
        .await
        .expect(200);
    assert_eq!(patched.header("etag"), Some("\"v2\""));
    assert_eq!(
        (&patched.body["question"], &patched.body["max_choices"]),
        (&json!("Dinner?"), &json!(2))
    );
    // A client still holding v1 is stopped, and nothing changes.
    app.patch(&path)
        .bearer(&ann.access_token)
        .header("if-match", "\"v1\"")
        .json(json!({ "question": "Breakfast?" }))
        .send()
        .await
        .expect_problem(412, "precondition-failed");
    let read = app
        .get(&path)
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(read.body["question"], "Dinner?");
    // Clearing the deadline with null, setting it with a timestamp.
    let later = (app.now() + time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let with_deadline = app
        .patch(&path)
        .bearer(&ann.access_token)
        .json(json!({ "closes_at": later }))
        .send()
        .await
        .expect(200);
    assert!(with_deadline.body["closes_at"].is_string());
    let cleared = app
        .patch(&path)
        .bearer(&ann.access_token)
        .json(json!({ "closes_at": null }))
        .send()
        .await
        .expect(200);
    assert_eq!(cleared.body["closes_at"], Value::Null);
}

async fn options_change_freely_until_the_first_ballot(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let path = format!("/v1/polls/{id}");
    let changed = app
        .patch(&path)
        .bearer(&ann.access_token)
        .json(json!({ "options": ["Pizza", "Salad", "Soup"] }))
        .send()
        .await
        .expect(200);
    assert_eq!(
        changed.body["options"][1],
        json!({ "id": "o2", "text": "Salad" })
    );
    app.vote(&app.mint_token(), &id, &["o3"]).await.expect(201);
    app.patch(&path)
        .bearer(&ann.access_token)
        .json(json!({ "options": ["Pizza", "Tacos"] }))
        .send()
        .await
        .expect_problem(409, "options-frozen");
    // Other fields still change, and the options and the counted ballot are intact.
    app.patch(&path)
        .bearer(&ann.access_token)
        .json(json!({ "question": "Lunch today?" }))
        .send()
        .await
        .expect(200);
    let results = app
        .settled_results(&ann.access_token, &id)
        .await
        .expect(200);
    assert_eq!(results.body["total"], 1);
    assert_eq!(
        results.body["options"][2],
        json!({ "id": "o3", "text": "Soup", "votes": 1 })
    );
}

async fn close_is_idempotent_and_stops_ballots_and_changes(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let close = format!("/v1/polls/{id}/close");
    let closed = app
        .post(&close)
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(closed.body["status"], "closed");
    let again = app
        .post(&close)
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(again.header("etag"), closed.header("etag"));
    app.vote(&app.mint_token(), &id, &["o1"])
        .await
        .expect_problem(409, "poll-closed");
    app.patch(&format!("/v1/polls/{id}"))
        .bearer(&ann.access_token)
        .json(json!({ "question": "Too late?" }))
        .send()
        .await
        .expect_problem(409, "poll-closed");
}

async fn delete_removes_the_poll(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let path = format!("/v1/polls/{id}");
    app.delete(&path)
        .bearer(&ann.access_token)
        .header("if-match", "\"v9\"")
        .send()
        .await
        .expect_problem(412, "precondition-failed");
    let reply = app
        .delete(&path)
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(204);
    assert_eq!(reply.body, Value::Null);
    app.get(&path)
        .bearer(&ann.access_token)
        .send()
        .await
        .expect_problem(404, "not-found");
    app.vote(&app.mint_token(), &id, &["o1"])
        .await
        .expect_problem(404, "not-found");
    app.results(&ann.access_token, &id)
        .await
        .expect_problem(404, "not-found");
}

/// Every owner-only route, tried by another signed-in user: 403 on a poll they can see,
/// 404 on one they cannot, and the poll unchanged afterwards.
async fn only_the_owner_writes(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let mallory = app.sign_up("mallory@example.com").await;
    for (visibility, status, slug) in [("public", 403, "forbidden"), ("invite", 404, "not-found")] {
        let poll = app
            .create_poll(
                &ann.access_token,
                json!({ "question": "Lunch?", "options": ["a", "b"], "visibility": visibility }),
            )
            .await;
        let id = poll.body["id"].as_str().unwrap_or_default();
        let path = format!("/v1/polls/{id}");
        let attempts = [
            app.patch(&path)
                .bearer(&mallory.access_token)
                .json(json!({ "question": "Pwned" })),
            app.patch(&path)
                .bearer(&mallory.access_token)
                .header("if-match", "*")
                .json(json!({ "options": ["x", "y"] })),
            app.delete(&path).bearer(&mallory.access_token),
            app.post(&format!("{path}/close"))
                .bearer(&mallory.access_token),
        ];
        for attempt in attempts {
            let reply = attempt.send().await.expect_problem(status, slug);
            assert!(
                !reply.body.to_string().contains("Lunch?"),
                "leaked the poll: {reply:#?}"
            );
        }
        let after = app
            .get(&path)
            .bearer(&ann.access_token)
            .send()
            .await
            .expect(200);
        assert_eq!(after.body, poll.body, "{visibility} poll changed");
    }
}

async fn invite_only_polls_are_hidden_from_other_users(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let poll = app
        .create_poll(
            &ann.access_token,
            json!({ "question": "Secret?", "options": ["a", "b"], "visibility": "invite" }),
        )
        .await;
    let id = poll.body["id"].as_str().unwrap_or_default();
    let stranger = app.mint_token();
    app.get(&format!("/v1/polls/{id}"))
        .bearer(&stranger)
        .send()
        .await
        .expect_problem(404, "not-found");
    app.results(&stranger, id)
        .await
        .expect_problem(404, "not-found");
    // Voting answers like a missing poll too: a 403 would confirm that the id exists.
    app.vote(&stranger, id, &["o1"])
        .await
        .expect_problem(404, "not-found");
    // Its owner is told why instead.
    app.vote(&ann.access_token, id, &["o1"])
        .await
        .expect_problem(403, "forbidden");
    let list = app
        .get("/v1/polls")
        .bearer(&stranger)
        .send()
        .await
        .expect(200);
    assert_eq!(list.body, json!({ "items": [], "next_cursor": null }));
}

async fn only_the_owner_sees_the_owner_id(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    let stranger = app.mint_token();
    let seen = app
        .get(&format!("/v1/polls/{id}"))
        .bearer(&stranger)
        .send()
        .await
        .expect(200);
    assert!(seen.body.get("owner_id").is_none(), "{:#}", seen.body);
    let own = app
        .get(&format!("/v1/polls/{id}"))
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(own.body["owner_id"], ann.user_id.as_str());
}

async fn an_idempotency_key_makes_one_poll_however_often_it_is_sent(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let create = |key: &'static str, body: Value| {
        app.post("/v1/polls")
            .bearer(&ann.access_token)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let body = json!({ "question": "Lunch?", "options": ["Pizza", "Soup"] });
    let first = create("lunch-1", body.clone()).await.expect(201);
    assert!(first.header("idempotent-replayed").is_none());
    // The same fields in another order are the same request.
    let again = create(
        "lunch-1",
        json!({ "options": ["Pizza", "Soup"], "question": "Lunch?" }),
    )
    .await
    .expect(201);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    create(
        "lunch-1",
        json!({ "question": "Dinner?", "options": ["a", "b"] }),
    )
    .await
    .expect_problem(422, "idempotency-key-reused");
    // Sent twice at once, a key still makes one poll.
    let (a, b) = tokio::join!(create("race", body.clone()), create("race", body.clone()));
    assert_eq!(a.expect(201).body["id"], b.expect(201).body["id"]);
    // The key is the owner's own: another user's same key makes their own poll.
    let bob = app.sign_up("bob@example.com").await;
    let bobs = app
        .post("/v1/polls")
        .bearer(&bob.access_token)
        .header("idempotency-key", "lunch-1")
        .json(body.clone())
        .send()
        .await
        .expect(201);
    assert_ne!(bobs.body["id"], first.body["id"]);
    let list = app
        .get("/v1/polls")
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(2));
    // After the window, the key is free again.
    app.clock.advance(time::Duration::hours(25));
    let later = create("lunch-1", body).await.expect(201);
    assert_ne!(later.body["id"], first.body["id"]);
    app.post("/v1/polls")
        .bearer(&ann.access_token)
        .header("idempotency-key", "")
        .json(json!({ "question": "q", "options": ["a", "b"] }))
        .send()
        .await
        .expect_problem(400, "bad-parameter");
}

async fn polls_need_a_signed_in_caller(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let id = app.lunch_poll(&ann.access_token).await;
    for call in [
        app.get("/v1/polls"),
        app.post("/v1/polls")
            .json(json!({ "question": "q", "options": ["a", "b"] })),
        app.get(&format!("/v1/polls/{id}")),
        app.delete(&format!("/v1/polls/{id}")),
        app.post(&format!("/v1/polls/{id}/votes"))
            .json(json!({ "choices": ["o1"] })),
        app.get(&format!("/v1/polls/{id}/results")),
    ] {
        call.send().await.expect_problem(401, "unauthorized");
    }
}

tally_tests::on_every_backend!(
    create_applies_defaults_and_answers_with_location_and_etag,
    listing_pages_through_my_polls_newest_first,
    a_list_page_is_one_storage_call_whatever_the_number_of_polls,
    bad_list_parameters_are_problems,
    patch_honours_if_match_and_bumps_the_etag,
    options_change_freely_until_the_first_ballot,
    close_is_idempotent_and_stops_ballots_and_changes,
    delete_removes_the_poll,
    only_the_owner_writes,
    invite_only_polls_are_hidden_from_other_users,
    only_the_owner_sees_the_owner_id,
    an_idempotency_key_makes_one_poll_however_often_it_is_sent,
    polls_need_a_signed_in_caller,
);
