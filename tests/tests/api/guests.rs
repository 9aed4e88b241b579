//! A poll's guest list through the API: guests added once, one live card per guest, revoke and
//! reissue (raced against the old and the new card), cards rendered for guests that come out
//! the same every time, closed and foreign polls refused, and nothing in the table from which
//! a token could be recomputed. Every scenario runs on both engines.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use serde_json::{Value, json};
use tally::domain::{GuestId, PollId};
use tally_tests::{Reply, TestApp};
use tokio::sync::Barrier;

use super::jobs::{PATIENCE, cards_of, invite_poll, token_of};

async fn add(app: &TestApp, owner: &str, poll: &str, guests: Value) -> Reply {
    app.post(&format!("/v1/polls/{poll}/guests"))
        .bearer(owner)
        .json(json!({ "guests": guests }))
        .send()
        .await
}

/// Adds guests named `names` and answers their ids, in order.
async fn add_named(app: &TestApp, owner: &str, poll: &str, names: &[&str]) -> Vec<String> {
    let guests: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    let reply = add(app, owner, poll, json!(guests)).await.expect(200);
    ids_of(&reply)
}

fn ids_of(reply: &Reply) -> Vec<String> {
    reply.body["guests"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| g["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn list(app: &TestApp, owner: &str, poll: &str, query: &str) -> Reply {
    app.get(&format!("/v1/polls/{poll}/guests{query}"))
        .bearer(owner)
        .send()
        .await
}

/// Every guest of the list (all pages), by id: (name, status, generation).
async fn statuses(app: &TestApp, owner: &str, poll: &str) -> HashMap<String, (String, String)> {
    let mut all = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=7&cursor={c}"),
            None => "?limit=7".to_owned(),
        };
        let page = list(app, owner, poll, &query).await.expect(200);
        for g in page.body["guests"].as_array().into_iter().flatten() {
            all.insert(
                g["id"].as_str().unwrap_or_default().to_owned(),
                (
                    g["name"].as_str().unwrap_or_default().to_owned(),
                    g["status"].as_str().unwrap_or_default().to_owned(),
                ),
            );
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// Starts a card job with `body` and waits for it: its cards, guest name → token.
async fn render(app: &TestApp, owner: &str, path: &str, body: Value) -> HashMap<String, String> {
    let job = app
        .post(path)
        .bearer(owner)
        .json(body)
        .send()
        .await
        .expect(202);
    let id = job.body["id"].as_str().unwrap_or_default().to_owned();
    let done = app.wait_for_job(owner, &id, PATIENCE).await;
    assert_eq!(done.body["status"], "done", "{:#}", done.body);
    let base = app.config.public_base_url.clone();
    cards_of(&app.download(owner, &id).await)
        .into_iter()
        .map(|(name, url)| {
            // Card files are named after their guests (`Ann.png`); the tests name them in
            // lower case.
            let guest = name.trim_end_matches(".png").to_lowercase();
            (guest, token_of(&url, &base))
        })
        .collect()
}

async fn cards(app: &TestApp, owner: &str, poll: &str, which: Value) -> HashMap<String, String> {
    render(
        app,
        owner,
        &format!("/v1/polls/{poll}/cards"),
        json!({ "guests": which }),
    )
    .await
}

async fn guest_vote(app: &TestApp, poll: &str, token: &str, choice: &str) -> Reply {
    app.post(&format!("/v1/polls/{poll}/votes"))
        .header("authorization", &format!("Invite {token}"))
        .json(json!({ "choices": [choice] }))
        .send()
        .await
}

/// The poll's total once counting has caught up with every ballot cast.
async fn total(app: &TestApp, owner: &str, poll: &str) -> u64 {
    app.settle().await;
    app.results(owner, poll).await.expect(200).body["total"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// The token of a guest's card of `generation`, as the render worker derives it (the test
/// holds the stack's invite key; no client can).
fn token(app: &TestApp, poll: &str, guest: &str, generation: u32) -> String {
    let poll: PollId = poll.parse().unwrap_or_else(|_| panic!("poll id {poll}"));
    let guest = GuestId::parse(guest).unwrap_or_else(|| panic!("guest id {guest}"));
    app.stack
        .invite_key
        .token(poll, &guest, generation)
        .to_string()
}

/// The latecomer: Ann and Bob are invited, then Ann, Bob and Cy. Nobody holds two live
/// cards (the second job prints Ann's and Bob's first cards again), and each guest counts once.
async fn a_latecomer_does_not_give_anyone_a_second_card(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let invites = format!("/v1/polls/{poll}/invites");
    let first = render(
        &app,
        &owner,
        &invites,
        json!({ "guests": [{ "name": "Ann" }, { "name": "Bob" }] }),
    )
    .await;
    let second = render(
        &app,
        &owner,
        &invites,
        json!({ "guests": [{ "name": "Ann" }, { "name": "Bob" }, { "name": "Cy" }] }),
    )
    .await;
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 3);
    assert_eq!(first["ann"], second["ann"], "Ann's one card");
    assert_eq!(first["bob"], second["bob"], "Bob's one card");
    guest_vote(&app, &poll, &first["ann"], "o1")
        .await
        .expect(201);
    guest_vote(&app, &poll, &second["ann"], "o2")
        .await
        .expect_problem(409, "already-voted");
    guest_vote(&app, &poll, &second["bob"], "o2")
        .await
        .expect(201);
    guest_vote(&app, &poll, &second["cy"], "o2")
        .await
        .expect(201);
    assert_eq!(total(&app, &owner, &poll).await, 3, "each guest once");
    let listed = list(&app, &owner, &poll, "").await.expect(200);
    assert_eq!(
        listed.body["counts"],
        json!({ "invited": 3, "opened": 0, "voted": 3 })
    );
    let all = statuses(&app, &owner, &poll).await;
    assert!(all.values().all(|(_, s)| s == "voted"), "{all:?}");
}

/// Adding guests: a guest given twice, by `ref` or by name and email (case and spacing aside),
/// is one guest; the answer says which were added; the list pages through them with their
/// status, and the counts follow invites being opened and used.
async fn guests_are_added_once_and_listed_with_their_status(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let first = add(
        &app,
        &owner,
        &poll,
        json!([
            { "name": "Ann Lee", "email": "ann@example.com" },
            { "name": "Bob", "ref": "row-2" },
            { "name": "ann  LEE", "email": "ANN@example.com" },
        ]),
    )
    .await
    .expect(200);
    assert_eq!(
        (
            first.body["added"].as_u64(),
            first.body["existing"].as_u64()
        ),
        (Some(2), Some(0))
    );
    let again = add(
        &app,
        &owner,
        &poll,
        json!([
            { "name": "Robert", "ref": "row-2" },
            { "name": "Ann Lee", "email": "ann@example.com" },
            { "name": "Cy" },
        ]),
    )
    .await
    .expect(200);
    let flags: Vec<_> = again.body["guests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["added"].as_bool())
        .collect();
    assert_eq!(flags, [Some(false), Some(false), Some(true)]);
    assert_eq!(
        ids_of(&again)[0],
        ids_of(&first)[1],
        "the same ref, the same guest"
    );
    // Twenty more, so that the list takes pages.
    let many: Vec<Value> = (0..20)
        .map(|i| json!({ "name": format!("Extra {i}") }))
        .collect();
    add(&app, &owner, &poll, json!(many)).await.expect(200);
    let all = statuses(&app, &owner, &poll).await;
    assert_eq!(all.len(), 23);
    assert!(all.values().all(|(_, s)| s == "invited"));
    assert_eq!(all[&ids_of(&first)[1]].0, "Bob", "the first name stays");

    let ann = ids_of(&first)[0].clone();
    let ann_token = token(&app, &poll, &ann, 0);
    let read = app
        .get(&format!("/v1/invites/{ann_token}"))
        .send()
        .await
        .expect(200);
    assert_eq!(read.body["guest_name"], "Ann Lee");
    app.get(&format!("/v1/invites/{ann_token}"))
        .send()
        .await
        .expect(200);
    let counts = list(&app, &owner, &poll, "?limit=1").await.expect(200).body["counts"].clone();
    assert_eq!(
        counts,
        json!({ "invited": 23, "opened": 1, "voted": 0 }),
        "opened once"
    );
    assert_eq!(statuses(&app, &owner, &poll).await[&ann].1, "opened");
    guest_vote(&app, &poll, &ann_token, "o1").await.expect(201);
    assert_eq!(statuses(&app, &owner, &poll).await[&ann].1, "voted");

    list(&app, &owner, &poll, "?limit=0")
        .await
        .expect_problem(400, "bad-parameter");
    list(&app, &owner, &poll, "?cursor=nope")
        .await
        .expect_problem(400, "bad-parameter");
    add(&app, &owner, &poll, json!([{ "name": " " }]))
        .await
        .expect_problem(422, "validation-failed");
}

/// Revoking kills a card at once on the page and the API; reissuing gives the guest a new card
/// and no second vote. Raced: the old card votes while the guest is reissued, then the old and
/// the new card vote at once. Whatever the order, each guest has at most one ballot, a ballot
/// cast stays counted, and the old card is dead afterwards.
async fn revoke_and_reissue_race_the_old_and_new_cards(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let names: Vec<String> = (0..12).map(|i| format!("Guest {i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ids = add_named(&app, &owner, &poll, &refs).await;

    // A plain revoke: 410 on the page and the API.
    let gone = token(&app, &poll, &ids[0], 0);
    let revoked = app
        .post(&format!("/v1/polls/{poll}/guests/{}/revoke", ids[0]))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    assert_eq!(revoked.body["status"], "revoked");
    app.get(&format!("/v1/invites/{gone}"))
        .send()
        .await
        .expect_problem(410, "invite-revoked");
    guest_vote(&app, &poll, &gone, "o1")
        .await
        .expect_problem(410, "invite-revoked");

    let app = Arc::new(app);
    let racing = &ids[1..];
    let barrier = Arc::new(Barrier::new(racing.len() * 2));
    let first_round = join_all(racing.iter().flat_map(|id| {
        let old = token(&app, &poll, id, 0);
        let (app_a, app_b, poll_a, poll_b) = (app.clone(), app.clone(), poll.clone(), poll.clone());
        let (owner, id, b1, b2) = (owner.clone(), id.clone(), barrier.clone(), barrier.clone());
        let vote = async move {
            b1.wait().await;
            guest_vote(&app_a, &poll_a, &old, "o1")
                .await
                .status
                .as_u16()
        };
        let reissue = async move {
            b2.wait().await;
            app_b
                .post(&format!("/v1/polls/{poll_b}/guests/{id}/reissue"))
                .bearer(&owner)
                .send()
                .await
                .status
                .as_u16()
        };
        [
            Box::pin(vote) as std::pin::Pin<Box<dyn Future<Output = u16> + Send>>,
            Box::pin(reissue),
        ]
    }))
    .await;
    let mut voted_first = HashSet::new();
    for (i, pair) in first_round.chunks(2).enumerate() {
        assert_eq!(pair[1], 200, "reissue of {}", racing[i]);
        assert!(pair[0] == 201 || pair[0] == 410, "old card: {}", pair[0]);
        if pair[0] == 201 {
            voted_first.insert(racing[i].clone());
        }
    }
    let after_first = total(&app, &owner, &poll).await;
    assert_eq!(
        after_first,
        voted_first.len() as u64,
        "each ballot cast is counted"
    );

    // Old (generation 0) and new (generation 1) cards at once.
    let barrier = Arc::new(Barrier::new(racing.len() * 2));
    let second_round = join_all(racing.iter().flat_map(|id| {
        [0, 1].map(|generation| {
            let card = token(&app, &poll, id, generation);
            let (app, poll, barrier) = (app.clone(), poll.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                guest_vote(&app, &poll, &card, "o2").await
            }
        })
    }))
    .await;
    for (i, pair) in second_round.chunks(2).enumerate() {
        let id = &racing[i];
        assert_eq!(
            pair[0].status.as_u16(),
            410,
            "old card of {id}: {:#?}",
            pair[0]
        );
        if voted_first.contains(id) {
            assert_eq!(pair[1].problem_type(), "/problems/already-voted", "{id}");
        } else {
            assert_eq!(
                pair[1].status.as_u16(),
                201,
                "new card of {id}: {:#?}",
                pair[1]
            );
        }
    }
    assert_eq!(
        total(&app, &owner, &poll).await,
        racing.len() as u64,
        "each guest once"
    );
    let listed = statuses(&app, &owner, &poll).await;
    assert!(
        racing.iter().all(|id| listed[id].1 == "voted"),
        "{listed:?}"
    );
    assert_eq!(listed[&ids[0]].1, "revoked");

    // A reissued voter's new card shows their one ballot; reissuing again kills that card.
    let voter = &racing[0];
    let page = app
        .get(&format!("/v1/invites/{}", token(&app, &poll, voter, 1)))
        .send()
        .await
        .expect(200);
    assert_eq!(page.body["used"], true);
    app.post(&format!("/v1/polls/{poll}/guests/{voter}/reissue"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    guest_vote(&app, &poll, &token(&app, &poll, voter, 1), "o1")
        .await
        .expect_problem(410, "invite-revoked");
    guest_vote(&app, &poll, &token(&app, &poll, voter, 2), "o1")
        .await
        .expect_problem(409, "already-voted");
}

/// Cards for guests: the same guests give the same tokens, a day later too (when the first
/// job's ZIP is gone), unless reissued; "new" takes only the guests added since the last job.
async fn rendering_again_gives_the_same_cards_unless_reissued(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let ids = add_named(&app, &owner, &poll, &["Ann", "Bob"]).await;
    let first = cards(&app, &owner, &poll, json!("all")).await;
    assert_eq!(first["ann"], token(&app, &poll, &ids[0], 0));
    app.clock.advance(time::Duration::hours(25));
    let later = cards(&app, &owner, &poll, json!("all")).await;
    assert_eq!(first, later, "a day later, the same cards");

    app.post(&format!("/v1/polls/{poll}/guests/{}/reissue", ids[1]))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    app.clock.advance(time::Duration::seconds(1));
    let cy = add_named(&app, &owner, &poll, &["Cy"]).await;
    let new = cards(&app, &owner, &poll, json!("new")).await;
    assert_eq!(new.keys().collect::<Vec<_>>(), ["cy"], "only the latecomer");
    assert_eq!(new["cy"], token(&app, &poll, &cy[0], 0));
    let bob = cards(&app, &owner, &poll, json!([ids[1]])).await;
    assert_ne!(bob["bob"], first["bob"], "reissued: a new card");
    assert_eq!(bob["bob"], token(&app, &poll, &ids[1], 1));
    // Nothing new since the last "new" job: nothing to render.
    app.post(&format!("/v1/polls/{poll}/cards"))
        .bearer(&owner)
        .json(json!({ "guests": "new" }))
        .send()
        .await
        .expect_problem(422, "validation-failed");
    app.post(&format!("/v1/polls/{poll}/cards"))
        .bearer(&owner)
        .json(json!({ "guests": "everyone" }))
        .send()
        .await
        .expect_problem(422, "validation-failed");
}

/// Nothing stored lets anyone recompute a token: no item holds the invite key, a job secret,
/// or any token printed on a card (only their hashes).
async fn no_item_of_the_table_holds_a_secret(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let printed = render(
        &app,
        &owner,
        &format!("/v1/polls/{poll}/invites"),
        json!({ "guests": [{ "name": "Ann" }, { "name": "Bob" }] }),
    )
    .await;
    let ids = add_named(&app, &owner, &poll, &["Ann", "Bob"]).await;
    app.post(&format!("/v1/polls/{poll}/guests/{}/reissue", ids[0]))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    let mut secrets: Vec<String> = printed.values().cloned().collect();
    secrets.push(token(&app, &poll, &ids[0], 1));
    secrets.push(app.stack.invite_key.to_text());
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = app
            .store()
            .client()
            .scan()
            .table_name(app.store().table())
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert!(
        items.iter().any(
            |i| matches!(i.get("PK"), Some(AttributeValue::S(pk)) if pk.starts_with("INVITE#"))
        )
    );
    for item in &items {
        assert!(!item.contains_key("secret"), "{item:?}");
        let text = format!("{item:?}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in {item:?}");
        }
    }
}

/// A closed poll takes no new guests and no new cards; revoking still works.
async fn closed_polls_refuse_new_guests_and_cards(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let ids = add_named(&app, &owner, &poll, &["Ann"]).await;
    app.post(&format!("/v1/polls/{poll}/close"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    add(&app, &owner, &poll, json!([{ "name": "Bob" }]))
        .await
        .expect_problem(409, "poll-closed");
    app.post(&format!("/v1/polls/{poll}/invites"))
        .bearer(&owner)
        .json(json!({ "guests": [{ "name": "Bob" }] }))
        .send()
        .await
        .expect_problem(409, "poll-closed");
    app.post(&format!("/v1/polls/{poll}/cards"))
        .bearer(&owner)
        .json(json!({ "guests": "all" }))
        .send()
        .await
        .expect_problem(409, "poll-closed");
    app.post(&format!("/v1/polls/{poll}/guests/{}/reissue", ids[0]))
        .bearer(&owner)
        .send()
        .await
        .expect_problem(409, "poll-closed");
    app.post(&format!("/v1/polls/{poll}/guests/{}/revoke", ids[0]))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    assert_eq!(statuses(&app, &owner, &poll).await.len(), 1);
}

/// Only the owner reaches a list, and a guest of one poll is not a guest of another; a deleted
/// poll's cards answer 410.
async fn other_owners_and_other_polls_are_refused(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let stranger = app.sign_up("stranger@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let public = app.lunch_poll(&owner).await;
    let theirs = invite_poll(&app, &stranger).await;
    let ids = add_named(&app, &owner, &poll, &["Ann"]).await;
    add_named(&app, &stranger, &theirs, &["Zed"]).await;

    add(&app, &stranger, &poll, json!([{ "name": "X" }]))
        .await
        .expect_problem(404, "not-found");
    add(&app, &stranger, &public, json!([{ "name": "X" }]))
        .await
        .expect_problem(403, "forbidden");
    list(&app, &stranger, &poll, "")
        .await
        .expect_problem(404, "not-found");
    list(&app, &stranger, &public, "")
        .await
        .expect_problem(403, "forbidden");
    for action in ["revoke", "reissue"] {
        app.post(&format!("/v1/polls/{poll}/guests/{}/{action}", ids[0]))
            .bearer(&stranger)
            .send()
            .await
            .expect_problem(404, "not-found");
        // The stranger's own poll does not have the owner's guest.
        app.post(&format!("/v1/polls/{theirs}/guests/{}/{action}", ids[0]))
            .bearer(&stranger)
            .send()
            .await
            .expect_problem(404, "not-found");
    }
    app.post(&format!("/v1/polls/{theirs}/cards"))
        .bearer(&stranger)
        .json(json!({ "guests": [ids[0]] }))
        .send()
        .await
        .expect_problem(422, "validation-failed");
    app.get("/v1/polls").bearer(&owner).send().await.expect(200);
    let list_unauth = app.get(&format!("/v1/polls/{poll}/guests")).send().await;
    assert_eq!(list_unauth.status.as_u16(), 401);

    // The card of a deleted poll: 410.
    let card = token(&app, &poll, &ids[0], 0);
    guest_vote(&app, &theirs, &card, "o1")
        .await
        .expect_problem(403, "forbidden");
    let etag = app
        .get(&format!("/v1/polls/{poll}"))
        .bearer(&owner)
        .send()
        .await
        .header("etag")
        .unwrap_or_default()
        .to_owned();
    app.delete(&format!("/v1/polls/{poll}"))
        .bearer(&owner)
        .header("if-match", &etag)
        .send()
        .await
        .expect(204);
    app.get(&format!("/v1/invites/{card}"))
        .send()
        .await
        .expect_problem(410, "poll-deleted");
    guest_vote(&app, &poll, &card, "o1")
        .await
        .expect_problem(410, "poll-deleted");
}

/// The guest routes' storage calls, rate-limit windows included, with one guest and with
/// 1,000: the same.
async fn guest_routes_keep_their_storage_budget(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let measure = |what: &'static str| {
        let (app, owner, poll) = (&app, owner.clone(), poll.clone());
        async move {
            let guest = add_named(app, &owner, &poll, &["Budget guest"]).await[0].clone();
            let mut calls = Vec::new();
            let before = app.store().calls();
            add(app, &owner, &poll, json!([{ "name": "Budget guest" }]))
                .await
                .expect(200);
            calls.push(("POST guests (1)", app.store().calls() - before));
            let before = app.store().calls();
            list(app, &owner, &poll, "?limit=99").await.expect(200);
            calls.push(("GET guests", app.store().calls() - before));
            let before = app.store().calls();
            app.post(&format!("/v1/polls/{poll}/guests/{guest}/reissue"))
                .bearer(&owner)
                .send()
                .await
                .expect(200);
            calls.push(("reissue", app.store().calls() - before));
            let before = app.store().calls();
            app.post(&format!("/v1/polls/{poll}/guests/{guest}/revoke"))
                .bearer(&owner)
                .send()
                .await
                .expect(200);
            calls.push(("revoke", app.store().calls() - before));
            let card = token(app, &poll, &guest, 0);
            let before = app.store().calls();
            app.get(&format!("/v1/invites/{card}"))
                .send()
                .await
                .expect(410);
            calls.push(("GET invite (revoked)", app.store().calls() - before));
            (what, calls)
        }
    };
    let expected = vec![
        ("POST guests (1)", 3),
        ("GET guests", 3),
        ("reissue", 5),
        ("revoke", 5),
        ("GET invite (revoked)", 1),
    ];
    let (_, small) = measure("one guest").await;
    assert_eq!(small, expected, "with one guest");
    let many: Vec<Value> = (0..999)
        .map(|i| json!({ "name": format!("Guest {i}") }))
        .collect();
    let added = add(&app, &owner, &poll, json!(many)).await.expect(200);
    assert_eq!(added.body["added"], 999);
    let (_, large) = measure("1,000 guests").await;
    assert_eq!(large, expected, "with 1,000 guests");
    let counts = list(&app, &owner, &poll, "").await.expect(200).body["counts"].clone();
    assert_eq!(counts["invited"], 1000, "the budget guest and 999 more");
}

/// Guests read results with their card, under the poll's `results` rule: after the close when
/// the poll says so, at once when it says `always`; never with a revoked card or another
/// poll's.
async fn guests_see_results_when_the_poll_allows(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let later = app
        .create_poll(&owner, json!({ "question": "Later?", "options": ["Yes", "No"], "visibility": "invite", "results": "after_close" }))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let now = invite_poll(&app, &owner).await;
    let ann = add_named(&app, &owner, &later, &["Ann"]).await[0].clone();
    let bob = add_named(&app, &owner, &now, &["Bob", "Cy"]).await;
    let read = |poll: String, card: String| {
        let app = &app;
        async move {
            app.get(&format!("/v1/polls/{poll}/results"))
                .header("authorization", &format!("Invite {card}"))
                .send()
                .await
        }
    };
    let ann_card = token(&app, &later, &ann, 0);
    guest_vote(&app, &later, &ann_card, "o1").await.expect(201);
    read(later.clone(), ann_card.clone())
        .await
        .expect_problem(403, "forbidden");
    let bob_card = token(&app, &now, &bob[0], 0);
    guest_vote(&app, &now, &bob_card, "o2").await.expect(201);
    app.settle().await;
    let shown = read(now.clone(), bob_card.clone()).await.expect(200);
    assert_eq!(shown.body["total"], 1);
    read(later.clone(), bob_card.clone())
        .await
        .expect_problem(403, "forbidden");
    app.post(&format!("/v1/polls/{later}/close"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    let closed = read(later.clone(), ann_card).await.expect(200);
    assert_eq!(closed.body["total"], 1);
    app.post(&format!("/v1/polls/{now}/guests/{}/revoke", bob[1]))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    read(now.clone(), token(&app, &now, &bob[1], 0))
        .await
        .expect_problem(410, "invite-revoked");
}

/// Whether the item belongs to `poll`'s guests: a guest or the list (`GUEST#<poll>`), a
/// ballot in the poll (`BALLOT#<poll>#…`), or a card naming the poll.
fn of_poll_guests(item: &HashMap<String, AttributeValue>, poll: &str) -> bool {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.as_str(),
        _ => "",
    };
    let pk = text("PK");
    pk == format!("GUEST#{poll}")
        || pk.starts_with(&format!("BALLOT#{poll}#"))
        || (pk.starts_with("INVITE#") && text("poll_id") == poll)
}

/// The items of the table that are not rate windows (which every request moves), keyed by
/// their keys, for comparing what a purge left of other polls.
async fn lasting_items(app: &TestApp) -> HashMap<String, HashMap<String, AttributeValue>> {
    app.all_items()
        .await
        .into_iter()
        .filter_map(|item| {
            let key = |name: &str| match item.get(name) {
                Some(AttributeValue::S(s)) => s.clone(),
                _ => String::new(),
            };
            let (pk, sk) = (key("PK"), key("SK"));
            (!pk.starts_with("RATE#")).then(|| (format!("{pk}|{sk}"), item))
        })
        .collect()
}

/// A purge message for `poll` on its `receives`th delivery, as SQS hands it to the render
/// function.
fn purge_delivery(poll: &str, receives: u32) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
    message.message_id = Some(format!("purge-{receives}"));
    message.body = Some(json!({ "purge": poll }).to_string());
    message.attributes =
        HashMap::from([("ApproximateReceiveCount".to_owned(), receives.to_string())]);
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![message];
    event
}

/// Deleting a poll removes its guests (names, emails, references), every card they were
/// issued and their ballots, through the queue and the render worker; another poll's guests,
/// cards and ballots stay as they were, a redelivered purge message changes nothing, and a
/// purge message for a poll that was not deleted removes nothing.
async fn deleting_a_poll_purges_its_guests_cards_and_ballots(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let doomed = invite_poll(&app, &owner).await;
    let kept = invite_poll(&app, &owner).await;
    let added = add(
        &app,
        &owner,
        &doomed,
        json!([
            { "name": "Purged Ann", "email": "ann@purged.example" },
            { "name": "Purged Bob", "ref": "bob-ref-purged" },
            { "name": "Purged Cy" },
        ]),
    )
    .await
    .expect(200);
    let ids = ids_of(&added);
    let zed = add_named(&app, &owner, &kept, &["Kept Zed"]).await;
    // Bob's card reissued twice: three cards of his stand, the first two revoked.
    for _ in 0..2 {
        app.post(&format!("/v1/polls/{doomed}/guests/{}/reissue", ids[1]))
            .bearer(&owner)
            .send()
            .await
            .expect(200);
    }
    let ann_card = token(&app, &doomed, &ids[0], 0);
    app.get(&format!("/v1/invites/{ann_card}"))
        .send()
        .await
        .expect(200);
    guest_vote(&app, &doomed, &ann_card, "o1").await.expect(201);
    guest_vote(&app, &doomed, &token(&app, &doomed, &ids[1], 2), "o2")
        .await
        .expect(201);
    guest_vote(&app, &kept, &token(&app, &kept, &zed[0], 0), "o1")
        .await
        .expect(201);
    app.settle().await;

    let before = app.all_items().await;
    let doomed_items: Vec<_> = before
        .iter()
        .filter(|i| of_poll_guests(i, &doomed))
        .collect();
    // 3 guests and the list, 5 cards (Bob's three), 2 ballots.
    assert_eq!(doomed_items.len(), 11, "{doomed_items:#?}");
    let kept_before: HashMap<_, _> = lasting_items(&app)
        .await
        .into_iter()
        .filter(|(_, i)| of_poll_guests(i, &kept))
        .collect();
    assert_eq!(kept_before.len(), 4, "Zed, the list, Zed's card and ballot");

    let etag = app
        .get(&format!("/v1/polls/{doomed}"))
        .bearer(&owner)
        .send()
        .await
        .header("etag")
        .unwrap_or_default()
        .to_owned();
    app.delete(&format!("/v1/polls/{doomed}"))
        .bearer(&owner)
        .header("if-match", &etag)
        .send()
        .await
        .expect(204);
    app.get(&format!("/v1/invites/{ann_card}"))
        .send()
        .await
        .expect_problem(410, "poll-deleted");

    // The purge runs in the background: a minute is hundreds of times what it takes. What
    // may stay are the cards' tombstones: the poll's id and a TTL, nothing of the guest.
    let is_tombstone = |item: &HashMap<String, AttributeValue>| {
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
            == [
                "PK",
                "SK",
                "generation",
                "guest_name",
                "opened",
                "poll_id",
                "revoked",
                "ttl",
            ]
            && matches!(item.get("guest_name"), Some(AttributeValue::S(n)) if n.is_empty())
    };
    let started = std::time::Instant::now();
    let left = loop {
        let left: Vec<_> = app
            .all_items()
            .await
            .into_iter()
            .filter(|i| of_poll_guests(i, &doomed))
            .collect();
        if left.iter().all(is_tombstone) || started.elapsed() > std::time::Duration::from_secs(60) {
            break left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(left.iter().all(is_tombstone), "left behind: {left:#?}");
    assert_eq!(
        left.len(),
        5,
        "one tombstone per card ever issued: {left:#?}"
    );
    let now = app.now().unix_timestamp();
    for tombstone in &left {
        let ttl = match tombstone.get("ttl") {
            Some(AttributeValue::N(n)) => n.parse::<i64>().unwrap_or_default(),
            _ => 0,
        };
        // The table's TTL attribute, in epoch seconds: about 30 days from now.
        assert!(
            (now + 29 * 86_400..=now + 31 * 86_400).contains(&ttl),
            "{tombstone:?}"
        );
    }
    // Nothing anywhere in the table names the doomed poll's guests any more, and their cards
    // still say what happened.
    let everything = format!("{:?}", app.all_items().await);
    for personal in [
        "Purged Ann",
        "ann@purged.example",
        "Purged Bob",
        "bob-ref-purged",
        "Purged Cy",
    ] {
        assert!(!everything.contains(personal), "{personal} is still stored");
    }
    for guest in &ids {
        assert!(
            !everything.contains(guest.as_str()),
            "guest {guest} is still named"
        );
    }
    app.get(&format!("/v1/invites/{ann_card}"))
        .send()
        .await
        .expect_problem(410, "poll-deleted");
    guest_vote(&app, &doomed, &token(&app, &doomed, &ids[2], 0), "o1")
        .await
        .expect_problem(410, "poll-deleted");
    let kept_items = |items: HashMap<String, HashMap<String, AttributeValue>>| -> HashMap<_, _> {
        items
            .into_iter()
            .filter(|(_, i)| of_poll_guests(i, &kept))
            .collect()
    };
    assert_eq!(kept_items(lasting_items(&app).await), kept_before);

    // The same message delivered again (SQS delivers at least once): nothing fails, nothing
    // else goes.
    let all_before = lasting_items(&app).await;
    let again = app.stack.worker.handle(purge_delivery(&doomed, 2)).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(lasting_items(&app).await, all_before);

    // A purge message for a poll that still exists (its deletion failed after the message was
    // sent): handed back on its first delivery, in case the deletion is still being written,
    // then dropped; the poll keeps its guests either way.
    let early = app.stack.worker.handle(purge_delivery(&kept, 1)).await;
    assert_eq!(early.batch_item_failures.len(), 1, "{early:?}");
    let late = app.stack.worker.handle(purge_delivery(&kept, 2)).await;
    assert!(late.batch_item_failures.is_empty(), "{late:?}");
    assert_eq!(kept_items(lasting_items(&app).await), kept_before);
    guest_vote(&app, &kept, &token(&app, &kept, &zed[0], 0), "o2")
        .await
        .expect_problem(409, "already-voted");
}

/// A public poll's guest count is its guests' ballots exactly, whoever else votes: the count
/// function counts guests' ballots apart. A tally from before that (without its mark) gives
/// `null` on a public poll, where the figure would be short, and all ballots on an
/// invite-only one, where every ballot is a guest's.
async fn a_public_polls_voted_count_is_its_guests_ballots(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let public = app.lunch_poll(&owner).await;
    let ids = add_named(&app, &owner, &public, &["Ann", "Bob", "Cy"]).await;
    for n in 0..3 {
        let user = app
            .sign_up(&format!("user{n}@example.com"))
            .await
            .access_token;
        app.vote(&user, &public, &["o2"]).await.expect(201);
    }
    for guest in &ids[..2] {
        guest_vote(&app, &public, &token(&app, &public, guest, 0), "o1")
            .await
            .expect(201);
    }
    app.settle().await;
    assert_eq!(app.results(&owner, &public).await.body["total"], 5);
    let counts = list(&app, &owner, &public, "").await.expect(200).body["counts"].clone();
    assert_eq!(counts, json!({ "invited": 3, "opened": 0, "voted": 2 }));

    // The same poll as if its tally predated guests' counts: no figure rather than a wrong one.
    let invited = invite_poll(&app, &owner).await;
    let guest = add_named(&app, &owner, &invited, &["Dee"]).await;
    guest_vote(&app, &invited, &token(&app, &invited, &guest[0], 0), "o1")
        .await
        .expect(201);
    app.settle().await;
    for poll in [&public, &invited] {
        app.store()
            .client()
            .update_item()
            .table_name(app.store().table())
            .key("PK", AttributeValue::S(format!("TALLY#{poll}")))
            .key("SK", AttributeValue::S("TALLY".into()))
            .update_expression("REMOVE guests_counted, guest_ballots")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    let old = list(&app, &owner, &public, "").await.expect(200).body["counts"].clone();
    assert_eq!(old["voted"], Value::Null, "{old}");
    let old = list(&app, &owner, &invited, "").await.expect(200).body["counts"].clone();
    assert_eq!(old["voted"], 1, "{old}");
}

/// Deleting a public poll also removes its signed-in voters' ballots, found from the count
/// function's records of who voted; another poll's ballots and records stay.
async fn deleting_a_public_poll_removes_its_users_ballots(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let doomed = app.lunch_poll(&owner).await;
    let kept = app.lunch_poll(&owner).await;
    let guest = add_named(&app, &owner, &doomed, &["Public Ann"]).await;
    for _ in 0..3 {
        app.vote(&app.mint_token(), &doomed, &["o1"])
            .await
            .expect(201);
    }
    app.vote(&app.mint_token(), &kept, &["o2"])
        .await
        .expect(201);
    guest_vote(&app, &doomed, &token(&app, &doomed, &guest[0], 0), "o2")
        .await
        .expect(201);
    // Who voted is recorded as the ballots are counted.
    app.settle().await;
    let of = |poll: &str, items: &[HashMap<String, AttributeValue>]| -> Vec<String> {
        let mut keys: Vec<String> = items
            .iter()
            .filter_map(|i| match i.get("PK") {
                Some(AttributeValue::S(pk))
                    if pk.starts_with(&format!("BALLOT#{poll}#"))
                        || *pk == format!("VOTERS#{poll}") =>
                {
                    Some(pk.clone())
                }
                _ => None,
            })
            .collect();
        keys.sort();
        keys
    };
    let before = app.all_items().await;
    let doomed_before = of(&doomed, &before);
    assert_eq!(
        doomed_before
            .iter()
            .filter(|k| k.starts_with("BALLOT#"))
            .count(),
        4,
        "{doomed_before:?}"
    );
    assert!(
        doomed_before.iter().any(|k| k.starts_with("VOTERS#")),
        "{doomed_before:?}"
    );
    let kept_before = of(&kept, &before);
    assert_eq!(kept_before.len(), 2, "{kept_before:?}");

    app.delete(&format!("/v1/polls/{doomed}"))
        .bearer(&owner)
        .send()
        .await
        .expect(204);
    let started = std::time::Instant::now();
    let left = loop {
        let left = of(&doomed, &app.all_items().await);
        if left.is_empty() || started.elapsed() > std::time::Duration::from_secs(60) {
            break left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(of(&kept, &app.all_items().await), kept_before);
    let again = app.stack.worker.handle(purge_delivery(&doomed, 3)).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(of(&kept, &app.all_items().await), kept_before);
}

tally_tests::on_every_backend!(
    guests_see_results_when_the_poll_allows,
    a_latecomer_does_not_give_anyone_a_second_card,
    guests_are_added_once_and_listed_with_their_status,
    revoke_and_reissue_race_the_old_and_new_cards,
    rendering_again_gives_the_same_cards_unless_reissued,
    no_item_of_the_table_holds_a_secret,
    closed_polls_refuse_new_guests_and_cards,
    other_owners_and_other_polls_are_refused,
    guest_routes_keep_their_storage_budget,
    deleting_a_poll_purges_its_guests_cards_and_ballots,
    a_public_polls_voted_count_is_its_guests_ballots,
    deleting_a_public_poll_removes_its_users_ballots,
);
