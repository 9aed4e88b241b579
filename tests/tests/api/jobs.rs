//! Invites and rendering through the API: jobs started by their routes, the render worker fed
//! by the in-process queue (real SQS event payloads), files in the S3 engine, downloads through
//! presigned URLs, and guests voting with the invites printed on their cards. The worker's
//! failures and redeliveries are in `render.rs`, which shares this file's helpers.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tally_tests::{Reply, TestApp, decode_qr, http_get, zip_entries};

/// How long a test waits for a job before calling it stuck (a liveness bound, not a timing).
pub(crate) const PATIENCE: Duration = Duration::from_secs(600);

fn guests(n: usize) -> Value {
    json!({ "guests": (0..n).map(|i| json!({ "name": format!("Guest {i}") })).collect::<Vec<_>>() })
}

pub(crate) async fn invite_poll(app: &TestApp, owner: &str) -> String {
    let poll = app
        .create_poll(owner, json!({ "question": "Which day suits you?", "options": ["Friday", "Saturday"], "visibility": "invite" }))
        .await;
    poll.body["id"].as_str().unwrap_or_default().to_owned()
}

pub(crate) async fn start_invites(app: &TestApp, owner: &str, poll: &str, n: usize) -> Reply {
    let reply = app
        .post(&format!("/v1/polls/{poll}/invites"))
        .bearer(owner)
        .json(guests(n))
        .send()
        .await
        .expect(202);
    let id = reply.body["id"].as_str().unwrap_or_default();
    assert_eq!(
        reply.header("location"),
        Some(format!("/v1/jobs/{id}").as_str())
    );
    reply
}

/// The id of an invites job started through the API for `n` guests.
pub(crate) async fn started_invites(app: &TestApp, owner: &str, poll: &str, n: usize) -> String {
    start_invites(app, owner, poll, n).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The cards of a ZIP (its `.png` entries, in order): entry name → the URL its QR code
/// encodes.
pub(crate) fn cards_of(zip: &[u8]) -> Vec<(String, String)> {
    zip_entries(zip)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".png"))
        .map(|(name, png)| {
            let url = decode_qr(&png).unwrap_or_else(|| panic!("{name}: no readable QR code"));
            (name, url)
        })
        .collect()
}

pub(crate) fn token_of(url: &str, base: &str) -> String {
    url.strip_prefix(&format!("{base}/i/"))
        .unwrap_or_else(|| panic!("{url} is not an invite URL"))
        .to_owned()
}

/// 1,000 guests: one job, 1,000 distinct cards in one ZIP, each card's QR code an invite URL
/// that lets exactly one ballot through.
async fn a_thousand_guests_end_to_end(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let job = start_invites(&app, &owner, &poll, 1000).await;
    let id = job.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        (job.body["status"].as_str(), job.body["total"].as_u64()),
        (Some("queued"), Some(1000))
    );

    let finished = app.wait_for_job(&owner, &id, PATIENCE).await;
    assert_eq!(finished.body["status"], "done", "{:#}", finished.body);
    assert_eq!(
        (
            finished.body["done"].as_u64(),
            finished.body["progress"].as_f64()
        ),
        (Some(1000), Some(1.0))
    );
    assert_eq!(
        finished.body["download_url"],
        format!("/v1/jobs/{id}/download")
    );

    let cards = cards_of(&app.download(&owner, &id).await);
    assert_eq!(cards.len(), 1000);
    let names: HashSet<_> = cards.iter().map(|(n, _)| n.clone()).collect();
    let urls: HashSet<_> = cards.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(
        (names.len(), urls.len()),
        (1000, 1000),
        "cards or invites repeat"
    );

    let base = app.config.public_base_url.clone();
    for (i, (name, url)) in cards.iter().enumerate() {
        let token = token_of(url, &base);
        let invite = app
            .get(&format!("/v1/invites/{token}"))
            .send()
            .await
            .expect(200);
        assert_eq!(invite.body["poll"]["id"], poll.as_str());
        // The token is the credential, and a guest never learns the owner's id.
        assert_eq!(invite.header("cache-control"), Some("no-store"));
        assert!(invite.body["poll"].get("owner_id").is_none());
        // The card's file is named after its guest.
        let guest = invite.body["guest_name"].as_str().unwrap_or("?");
        assert_eq!(name, &format!("{guest}.png"));
        let choice = ["o1", "o2"][i % 2];
        let vote = |choice: &'static str| {
            app.post(&format!("/v1/polls/{poll}/votes"))
                .header("authorization", &format!("Invite {token}"))
                .json(json!({ "choices": [choice] }))
                .send()
        };
        vote(choice).await.expect(201);
        vote(choice).await.expect_problem(409, "already-voted");
    }
    app.settle().await;
    let results = app.results(&owner, &poll).await.expect(200);
    assert_eq!(results.body["total"], 1000);
    assert_eq!(
        (
            results.body["options"][0]["votes"].as_u64(),
            results.body["options"][1]["votes"].as_u64()
        ),
        (Some(500), Some(500))
    );
}

/// Starting an invites job for new guests costs the rate counter, the poll, one transaction per
/// 49 guests put on the guest list, the job's transaction and the render quota, and one queue
/// call per ten chunks; the same request within 24 hours finds the same job, and another
/// request (or the same one a day later) makes a new one.
async fn the_same_request_within_a_day_finds_the_same_job(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let before = app.store().calls();
    let first = start_invites(&app, &owner, &poll, 10).await;
    assert_eq!(app.store().calls() - before, 5, "10 guests");
    let before = app.store().calls();
    start_invites(&app, &owner, &poll, 2000).await;
    // 2,000 guests of which the first 10 are on the list: 41 transactions of 49 (+1 for the
    // batch that held the 10), one read of the 10, the job, the quota.
    assert_eq!(
        app.store().calls() - before,
        2 + 41 + 1 + 1 + 1 + 1,
        "2,000 guests"
    );

    let again = start_invites(&app, &owner, &poll, 10).await;
    assert_eq!(again.body["id"], first.body["id"]);
    let other = start_invites(&app, &owner, &poll, 11).await;
    assert_ne!(other.body["id"], first.body["id"]);

    let qr = |format: &'static str| {
        app.post(&format!("/v1/polls/{poll}/qr"))
            .bearer(&owner)
            .json(json!({ "format": format }))
            .send()
    };
    let png = qr("png").await.expect(202);
    assert_eq!(qr("png").await.expect(202).body["id"], png.body["id"]);
    assert_ne!(qr("svg").await.expect(202).body["id"], png.body["id"]);

    app.clock.advance(time::Duration::hours(25));
    let next_day = start_invites(&app, &owner, &poll, 10).await;
    assert_ne!(next_day.body["id"], first.body["id"]);
}

/// The share QR code (PNG and SVG) and the results chart are jobs too; their files download
/// through the same 24-hour link.
async fn share_qr_codes_and_charts_are_jobs(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    app.vote(&app.mint_token(), &poll, &["o1"])
        .await
        .expect(201);

    let png = app
        .post(&format!("/v1/polls/{poll}/qr"))
        .bearer(&owner)
        .json(json!({ "format": "png" }))
        .send()
        .await
        .expect(202);
    let id = png.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        app.wait_for_job(&owner, &id, PATIENCE).await.body["status"],
        "done"
    );
    let file = app.download(&owner, &id).await;
    assert_eq!(
        decode_qr(&file),
        Some(format!("{}/p/{poll}", app.config.public_base_url))
    );

    let svg = app
        .post(&format!("/v1/polls/{poll}/qr"))
        .bearer(&owner)
        .json(json!({ "format": "svg" }))
        .send()
        .await
        .expect(202);
    let id = svg.body["id"].as_str().unwrap_or_default().to_owned();
    app.wait_for_job(&owner, &id, PATIENCE).await;
    let file = String::from_utf8(app.download(&owner, &id).await).unwrap_or_default();
    assert!(file.contains("<svg"), "{file:.200}");

    let chart = app
        .post(&format!("/v1/polls/{poll}/chart"))
        .bearer(&owner)
        .send()
        .await
        .expect(202);
    let id = chart.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(chart.body["kind"], "chart");
    app.wait_for_job(&owner, &id, PATIENCE).await;
    let file = app.download(&owner, &id).await;
    let image =
        image::load_from_memory(&file).unwrap_or_else(|e| panic!("chart is not an image: {e}"));
    assert!(image.width() >= 200 && image.height() >= 100);
    // Asking again on unchanged results finds the same chart; after a vote, a new one.
    let chart_again = || {
        app.post(&format!("/v1/polls/{poll}/chart"))
            .bearer(&owner)
            .send()
    };
    assert_eq!(chart_again().await.expect(202).body["id"], chart.body["id"]);
    app.vote(&app.mint_token(), &poll, &["o2"])
        .await
        .expect(201);
    // The chart draws the counts, which move once the ballot is counted.
    app.settle().await;
    let redrawn = chart_again().await.expect(202);
    assert_ne!(redrawn.body["id"], chart.body["id"]);
    assert_eq!(
        chart_again().await.expect(202).body["id"],
        redrawn.body["id"]
    );

    app.post(&format!("/v1/polls/{poll}/qr"))
        .bearer(&owner)
        .json(json!({ "format": "gif" }))
        .send()
        .await
        .expect_problem(422, "validation-failed");
}

/// Guests named in many scripts, in both Unicode forms of one name, with names no file system
/// takes as they are, twins that differ only in case, and would-be spreadsheet formulas. The
/// ZIP keeps every name (NFC, made safe, unique ignoring case) and marks its names as UTF-8,
/// every entry carries the time it was made, and its manifest, read with a CSV reader, lists
/// every guest with their reference, email, invite URL and file, each file holding the card
/// whose QR code is that URL.
async fn the_zip_names_cards_after_guests_and_lists_them_in_a_manifest(app: TestApp) {
    use unicode_normalization::UnicodeNormalization;

    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let long = "長".repeat(100);
    let guests: Vec<(&str, Option<&str>, &str)> = vec![
        ("李雷", Some("li.lei@example.com"), "李雷.png"),
        ("Дмитрий", None, "Дмитрий.png"),
        ("👩‍🍳 Chef Ana", None, "👩‍🍳 Chef Ana.png"),
        ("محمد عبد الله", None, "محمد عبد الله.png"),
        ("דוד לוי", None, "דוד לוי.png"),
        ("अनीता देवी", None, "अनीता देवी.png"),
        ("Ren\u{e9}e", None, "Ren\u{e9}e.png"),
        // The same name decomposed: composed, it is the same file name as the one above.
        ("Rene\u{301}e", None, "Ren\u{e9}e (2).png"),
        ("Ann", None, "Ann.png"),
        // A different guest (another email: without one, "ann" would be Ann again) whose
        // file name differs from Ann's only in case, which some file systems do not see.
        ("ann", Some("ann3@example.com"), "ann (2).png"),
        ("Ann", Some("ann2@example.com"), "Ann (3).png"),
        ("AC/DC: live?", None, "AC_DC_ live_.png"),
        ("CON", None, "CON_.png"),
        ("Dots...", None, "Dots.png"),
        (
            "=HYPERLINK(\"http://evil.example\")",
            None,
            "_HYPERLINK(_http___evil.example_).png",
        ),
        ("-rf", None, "_rf.png"),
        ("Zoë, \"the\" boss", None, "Zoë, _the_ boss.png"),
        (&long, None, ""),
    ];
    let body = json!({ "guests": guests.iter().map(|(name, email, _)| match email {
        Some(email) => json!({ "name": name, "email": email }),
        None => json!({ "name": name }),
    }).collect::<Vec<_>>() });
    let id = app
        .post(&format!("/v1/polls/{poll}/invites"))
        .bearer(&owner)
        .json(body)
        .send()
        .await
        .expect(202)
        .body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let before = app.now().unix_timestamp();
    let finished = app.wait_for_job(&owner, &id, PATIENCE).await;
    assert_eq!(finished.body["status"], "done", "{:#}", finished.body);
    let zip = app.download(&owner, &id).await;

    let cards: std::collections::HashMap<String, String> = cards_of(&zip).into_iter().collect();
    let manifest = tally_tests::manifest_of(&zip);
    assert_eq!((manifest.len(), cards.len()), (guests.len(), guests.len()));
    let base = format!("{}/i/", app.config.public_base_url);
    for (i, (line, (name, email, file))) in manifest.iter().zip(&guests).enumerate() {
        // A cell a spreadsheet would run as a formula is kept as text.
        let shown = if name.starts_with(['=', '+', '-', '@']) {
            format!("'{name}")
        } else {
            (*name).to_owned()
        };
        assert_eq!(line.name, shown, "line {i}");
        assert_eq!(line.reference as usize, i + 1);
        assert_eq!(line.email, email.unwrap_or_default());
        assert!(line.invite_url.starts_with(&base), "{}", line.invite_url);
        if !file.is_empty() {
            assert_eq!(line.file, *file, "{name}");
        }
        assert_eq!(
            cards.get(&line.file),
            Some(&line.invite_url),
            "{}",
            line.file
        );
    }
    let long_file = &manifest[guests.len() - 1].file;
    assert!(
        long_file.starts_with("長長長") && long_file.len() <= 90,
        "{long_file}"
    );

    // Every name is safe everywhere and unique even where case does not count.
    let facts = tally_tests::zip_entry_facts(&zip);
    let lower: HashSet<String> = facts.iter().map(|(n, ..)| n.to_lowercase()).collect();
    assert_eq!(lower.len(), facts.len(), "names repeat ignoring case");
    let reserved = ["con", "prn", "aux", "nul", "com1", "lpt1"];
    for (name, flags, stamp, year) in &facts {
        assert_eq!(name.nfc().collect::<String>(), *name, "{name} is not NFC");
        assert!(
            !name
                .chars()
                .any(|c| c.is_control() || "/\\:*?\"<>|".contains(c)),
            "{name}"
        );
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        assert!(
            !stem.ends_with([' ', '.']) && !name.starts_with(['.', ' ', '-']),
            "{name}"
        );
        assert!(!reserved.contains(&stem.to_lowercase().as_str()), "{name}");
        assert!(name.len() <= 255, "{name}");
        assert_eq!(flags & (1 << 11), 1 << 11, "{name}: the UTF-8 flag");
        let stamp = i64::from(stamp.unwrap_or_else(|| panic!("{name}: no extended timestamp")));
        assert!(
            (before - 600..=app.now().unix_timestamp() + 600).contains(&stamp),
            "{name}: made at {stamp}"
        );
        assert!(*year >= 2025, "{name}: DOS year {year}");
    }
    assert_eq!(facts.last().map(|f| f.0.as_str()), Some("manifest.csv"));
}

/// A poll's jobs, newest first, in pages, each with its download link; another poll's jobs are
/// not among them; only the owner reaches the list (404 where the poll is hidden, 403 where it
/// is not); two storage calls a page, whatever the number of jobs.
async fn a_polls_jobs_are_listed_newest_first_with_their_downloads(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let stranger = app.sign_up("stranger@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    let other = app.lunch_poll(&owner).await;
    let hidden = invite_poll(&app, &owner).await;
    let list = |poll: String, query: &'static str, token: String| {
        let app = &app;
        async move {
            app.get(&format!("/v1/polls/{poll}/jobs{query}"))
                .bearer(&token)
                .send()
                .await
        }
    };
    let empty = list(poll.clone(), "", owner.clone()).await.expect(200);
    assert_eq!(empty.body, json!({ "items": [], "next_cursor": null }));

    // Started one after the other (each waited for), so their creation times differ.
    let starts = [
        (format!("/v1/polls/{poll}/invites"), guests(2)),
        (format!("/v1/polls/{poll}/qr"), json!({ "format": "png" })),
        (format!("/v1/polls/{other}/qr"), json!({ "format": "svg" })),
        (format!("/v1/polls/{poll}/chart"), json!({})),
    ];
    let mut ids = Vec::new();
    for (path, body) in &starts {
        let id = app
            .post(path)
            .bearer(&owner)
            .json(body.clone())
            .send()
            .await
            .expect(202)
            .body["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let done = app.wait_for_job(&owner, &id, PATIENCE).await;
        assert_eq!(done.body["status"], "done", "{:#}", done.body);
        ids.push(id);
    }
    let before = app.store().calls();
    let all = list(poll.clone(), "", owner.clone()).await.expect(200);
    assert_eq!(app.store().calls() - before, 2, "the poll and one query");
    assert_eq!(all.header("cache-control"), Some("no-store"));
    let listed: Vec<&str> = all.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| j["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(listed, [ids[3].as_str(), ids[1].as_str(), ids[0].as_str()]);
    let kinds: Vec<&Value> = all.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| &j["kind"])
        .collect();
    assert_eq!(kinds, [&json!("chart"), &json!("qr"), &json!("invites")]);
    for job in all.body["items"].as_array().into_iter().flatten() {
        let id = job["id"].as_str().unwrap_or_default();
        assert_eq!(job["status"], "done");
        assert_eq!(job["poll_id"], poll.as_str());
        assert_eq!(job["download_url"], format!("/v1/jobs/{id}/download"));
        app.get(&format!("/v1/jobs/{id}/download"))
            .bearer(&owner)
            .send()
            .await
            .expect(302);
    }
    assert_eq!(all.body["next_cursor"], Value::Null);

    // Pages of two: the same jobs in the same order, and the same two calls a page.
    let first = list(poll.clone(), "?limit=2", owner.clone())
        .await
        .expect(200);
    let cursor = first.body["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!cursor.is_empty(), "{:#}", first.body);
    let before = app.store().calls();
    let second = app
        .get(&format!("/v1/polls/{poll}/jobs?limit=2&cursor={cursor}"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    assert_eq!(app.store().calls() - before, 2);
    let paged: Vec<&Value> = first.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(second.body["items"].as_array().into_iter().flatten())
        .map(|j| &j["id"])
        .collect();
    assert_eq!(
        paged,
        all.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| &j["id"])
            .collect::<Vec<_>>()
    );
    assert_eq!(second.body["next_cursor"], Value::Null);
    let theirs = list(other.clone(), "", owner.clone()).await.expect(200);
    assert_eq!(theirs.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(theirs.body["items"][0]["id"], ids[2].as_str());

    list(poll.clone(), "?limit=0", owner.clone())
        .await
        .expect_problem(400, "bad-parameter");
    list(poll.clone(), "?cursor=nope", owner.clone())
        .await
        .expect_problem(400, "bad-parameter");
    list(poll.clone(), "", stranger.clone())
        .await
        .expect_problem(403, "forbidden");
    list(hidden.clone(), "", stranger.clone())
        .await
        .expect_problem(404, "not-found");
    let unknown = tally::domain::PollId::new().to_string();
    list(unknown, "", owner.clone())
        .await
        .expect_problem(404, "not-found");
    let anonymous = app.get(&format!("/v1/polls/{poll}/jobs")).send().await;
    assert_eq!(anonymous.status.as_u16(), 401);
}

tally_tests::on_every_backend!(
    the_zip_names_cards_after_guests_and_lists_them_in_a_manifest,
    a_thousand_guests_end_to_end,
    the_same_request_within_a_day_finds_the_same_job,
    share_qr_codes_and_charts_are_jobs,
    a_polls_jobs_are_listed_newest_first_with_their_downloads,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_are_signed_afresh_and_end_after_24_hours() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let id = started_invites(&app, &owner, &poll, 3).await;
    let done = app.wait_for_job(&owner, &id, PATIENCE).await;
    let path = format!("/v1/jobs/{id}/download");
    assert!(
        app.get(&path)
            .bearer(&owner)
            .send()
            .await
            .expect(302)
            .header("location")
            .is_some()
    );

    let redirect = app.get(&path).bearer(&owner).send().await.expect(302);
    let url = redirect.header("location").unwrap_or_default().to_owned();
    assert_eq!(redirect.header("cache-control"), Some("no-store"));
    assert!(url.contains("X-Amz-Expires=300"), "short-lived: {url}");
    // The S3 engine checks the signature: a tampered URL is refused.
    let tampered = url.replace("X-Amz-Expires=300", "X-Amz-Expires=86400");
    assert_eq!(http_get(&tampered).await.0.as_u16(), 403);
    assert_eq!(http_get(&url).await.0.as_u16(), 200);
    // Pages ask for the link as JSON, then navigate to it.
    let as_json = app
        .get(&path)
        .bearer(&owner)
        .header("accept", "application/json")
        .send()
        .await
        .expect(200);
    assert_eq!(as_json.body["expires_in"], 300);
    let url = as_json.body["url"].as_str().unwrap_or_default();
    assert_eq!(http_get(url).await.0.as_u16(), 200);

    // 23 hours later the link still works; after 24 it is gone, and the job says so.
    app.clock.advance(time::Duration::hours(23));
    app.get(&path).bearer(&owner).send().await.expect(302);
    app.clock.advance(time::Duration::hours(1));
    app.get(&path)
        .bearer(&owner)
        .send()
        .await
        .expect_problem(410, "gone");
    let expired = app
        .get(&format!("/v1/jobs/{id}"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    assert_eq!(expired.body["download_url"], Value::Null);
    assert_eq!(expired.body["expires_at"], done.body["expires_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_their_owners_only() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let other = app.sign_up("other@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let public = app.lunch_poll(&owner).await;
    let id = started_invites(&app, &owner, &poll, 2).await;
    app.wait_for_job(&owner, &id, PATIENCE).await;
    app.get(&format!("/v1/jobs/{id}"))
        .bearer(&other)
        .send()
        .await
        .expect_problem(404, "not-found");
    app.get(&format!("/v1/jobs/{id}/download"))
        .bearer(&other)
        .send()
        .await
        .expect_problem(404, "not-found");
    app.post(&format!("/v1/polls/{poll}/invites"))
        .bearer(&other)
        .json(guests(1))
        .send()
        .await
        .expect_problem(404, "not-found");
    app.post(&format!("/v1/polls/{public}/invites"))
        .bearer(&other)
        .json(guests(1))
        .send()
        .await
        .expect_problem(403, "forbidden");
    app.post(&format!("/v1/polls/{public}/chart"))
        .bearer(&other)
        .send()
        .await
        .expect_problem(403, "forbidden");
    app.get(&format!("/v1/jobs/{id}"))
        .send()
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn guest_lists_are_validated() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let path = format!("/v1/polls/{poll}/invites");
    let cases = [
        (json!({ "guests": [] }), "guests"),
        (guests(10_001), "guests"),
        (json!({ "guests": [{ "name": " " }] }), "guests[0].name"),
        (
            json!({ "guests": [{ "name": "Ann" }, { "name": "Bob", "email": "bob" }] }),
            "guests[1].email",
        ),
        (
            json!({ "guests": [{ "name": "x".repeat(101) }] }),
            "guests[0].name",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post(&path).bearer(&owner).json(body).send().await;
        let reply = reply.expect_problem(422, "validation-failed");
        assert!(
            reply.body["errors"][field].is_array(),
            "{field}: {reply:#?}"
        );
    }
    // A long list with every row wrong names every row, even when the answer is far larger
    // than a request body may be (10,000 blank names make about 0.5 MB of errors).
    let blank: Vec<_> = (0..10_000).map(|_| json!({ "name": "" })).collect();
    let reply = app
        .post(&path)
        .bearer(&owner)
        .json(json!({ "guests": blank }))
        .send()
        .await
        .expect_problem(422, "validation-failed");
    let errors = reply.body["errors"].as_object().map(|e| e.len());
    assert_eq!(errors, Some(10_000));
    assert!(reply.body["errors"]["guests[9999].name"].is_array());
    // A guest list over its own 4 MiB limit is refused, and the answer names that limit
    // (not the 64 KiB of other routes), so the client knows how far to trim.
    let mut oversize = br#"{"guests":[{"name":"Ann"}]"#.to_vec();
    oversize.resize(4 * 1024 * 1024 + 1, b' ');
    oversize.push(b'}');
    let reply = app
        .post(&path)
        .bearer(&owner)
        .raw(oversize)
        .send()
        .await
        .expect_problem(413, "payload-too-large");
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("4194304 bytes"), "{detail}");
    // The largest list allowed goes through, emails and all (about 0.5 MB of JSON).
    let most: Vec<_> = (0..10_000)
        .map(|i| json!({ "name": format!("Guest number {i}"), "email": format!("guest{i}@example.com") }))
        .collect();
    app.post(&path)
        .bearer(&owner)
        .json(json!({ "guests": most }))
        .send()
        .await
        .expect(202);
    app.get(&format!("/v1/jobs/{}", uuid::Uuid::new_v4()))
        .bearer(&owner)
        .send()
        .await
        .expect_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invite_votes_once_and_only_in_its_own_poll() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let other_poll = invite_poll(&app, &owner).await;
    let id = started_invites(&app, &owner, &poll, 2).await;
    app.wait_for_job(&owner, &id, PATIENCE).await;
    let cards = cards_of(&app.download(&owner, &id).await);
    let token = token_of(&cards[0].1, &app.config.public_base_url);
    let as_guest = |poll: &str, token: &str| {
        app.post(&format!("/v1/polls/{poll}/votes"))
            .header("authorization", &format!("Invite {token}"))
            .json(json!({ "choices": ["o2"] }))
            .send()
    };
    // Signed-in users other than the owner cannot even see an invite-only poll; an invite
    // works only in its poll.
    app.vote(&app.mint_token(), &poll, &["o1"])
        .await
        .expect_problem(404, "not-found");
    as_guest(&other_poll, &token)
        .await
        .expect_problem(403, "forbidden");
    as_guest(&poll, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .expect_problem(403, "forbidden");
    as_guest(&poll, "short")
        .await
        .expect_problem(401, "unauthorized");

    let before = app
        .get(&format!("/v1/invites/{token}"))
        .send()
        .await
        .expect(200);
    assert_eq!(
        (before.body["used"].as_bool(), &before.body["ballot"]),
        (Some(false), &Value::Null)
    );
    assert_eq!(before.body["guest_name"], "Guest 0");
    assert_eq!(before.body["poll"]["question"], "Which day suits you?");
    as_guest(&poll, &token).await.expect(201);
    as_guest(&poll, &token)
        .await
        .expect_problem(409, "already-voted");
    let after = app
        .get(&format!("/v1/invites/{token}"))
        .send()
        .await
        .expect(200);
    assert_eq!(
        (
            after.body["used"].as_bool(),
            &after.body["ballot"]["choices"]
        ),
        (Some(true), &json!(["o2"]))
    );
    app.get("/v1/invites/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .expect_problem(404, "not-found");
}

/// A user's jobs render at most `TALLY_RENDER_GUESTS_PER_DAY` guests a day: a job that would go
/// over is 429 `render-quota` with `Retry-After` (the next midnight UTC) and queues nothing, a
/// replay of an accepted request costs nothing, another user has a quota of their own, and two
/// jobs started at once cannot both squeeze under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn render_work_per_user_and_day_is_bounded_by_a_quota() {
    let app = TestApp::start_with(
        &[("TALLY_RENDER_GUESTS_PER_DAY", "10")],
        tally_tests::Storage::Memory,
    )
    .await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let first = try_invites(&app, &owner, &poll, 6).await.expect(202);
    // The same request again answers with its job and is not charged a second time.
    let replay = try_invites(&app, &owner, &poll, 6).await.expect(202);
    assert_eq!(replay.body["id"], first.body["id"]);
    let over = try_invites(&app, &owner, &poll, 5)
        .await
        .expect_problem(429, "render-quota");
    let retry_after: i64 = over
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let detail = over.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("10 guests"), "{detail}");
    // What is left (4) still fits; then even a QR code (one file) does not.
    try_invites(&app, &owner, &poll, 4).await.expect(202);
    app.post(&format!("/v1/polls/{poll}/qr"))
        .bearer(&owner)
        .json(json!({}))
        .send()
        .await
        .expect_problem(429, "render-quota");
    // Another user's quota is their own; two of their jobs at once that together exceed it:
    // exactly one is accepted.
    let other = app.sign_up("other@example.com").await.access_token;
    let (a, b) = (
        invite_poll(&app, &other).await,
        invite_poll(&app, &other).await,
    );
    let (ra, rb) = tokio::join!(
        try_invites(&app, &other, &a, 7),
        try_invites(&app, &other, &b, 7)
    );
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 429], "{:#} {:#}", ra.body, rb.body);
    for reply in [first, replay] {
        let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            app.wait_for_job(&owner, &id, PATIENCE).await.body["status"],
            "done"
        );
    }
}

/// An invites job started through the API, whatever the answer.
async fn try_invites(app: &TestApp, owner: &str, poll: &str, n: usize) -> Reply {
    app.post(&format!("/v1/polls/{poll}/invites"))
        .bearer(owner)
        .json(guests(n))
        .send()
        .await
}

/// Starting a job answers the same request with the same job by its content, so an
/// `Idempotency-Key` would promise nothing more: it is refused with a 400 instead of being
/// silently ignored.
#[tokio::test]
async fn job_routes_refuse_an_idempotency_key() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    for (path, body) in [
        (format!("/v1/polls/{poll}/invites"), guests(1)),
        (format!("/v1/polls/{poll}/qr"), json!({ "format": "png" })),
        (format!("/v1/polls/{poll}/chart"), json!({})),
    ] {
        let reply = app
            .post(&path)
            .bearer(&owner)
            .header("idempotency-key", "retry-1")
            .json(body)
            .send()
            .await;
        assert_eq!(reply.status.as_u16(), 400, "{path}: {reply:#?}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
}
