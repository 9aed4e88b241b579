//! Invites and rendering: jobs through the API, the render worker fed by the in-process queue
//! (real SQS event payloads), files in the S3 engine, downloads through presigned URLs, and
//! guests voting with the invites printed on their cards.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tally::clock::ManualClock;
use tally::config::Config;
use tally::ports::{BlobStore, StoreError, StoreResult};
use tally_tests::{Reply, StackOptions, Storage, TestApp, decode_qr, http_get};

/// How long a test waits for a job before calling it stuck (a liveness bound, not a timing).
const PATIENCE: Duration = Duration::from_secs(600);

fn guests(n: usize) -> Value {
    json!({ "guests": (0..n).map(|i| json!({ "name": format!("Guest {i}") })).collect::<Vec<_>>() })
}

async fn invite_poll(app: &TestApp, owner: &str) -> String {
    let poll = app
        .create_poll(owner, json!({ "question": "Which day suits you?", "options": ["Friday", "Saturday"], "visibility": "invite" }))
        .await;
    poll.body["id"].as_str().unwrap_or_default().to_owned()
}

/// An invites job of `total` guests in `chunks` chunks, stored directly under `fingerprint`
/// with no message queued: the test decides what, if anything, its worker receives.
async fn stored_job(
    app: &TestApp,
    poll_id: &str,
    total: u32,
    chunks: u32,
    fingerprint: &str,
) -> tally::domain::Job {
    let poll = tally::ports::PollStore::poll(app.store(), poll_id.parse().unwrap_or_default())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("poll {poll_id}"));
    let job = tally::domain::Job {
        id: tally::domain::JobId::new(),
        kind: tally::domain::JobKind::Invites,
        poll_id: poll.id,
        owner_id: poll.owner_id,
        format: None,
        total,
        done: 0,
        failed: 0,
        chunks_total: chunks,
        chunks_done: 0,
        created_at: app.now(),
        completed_at: None,
        object_key: None,
        error: None,
        secret: "test-secret".into(),
    };
    tally::ports::JobStore::create_job(app.store(), &job, fingerprint, app.now(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    job
}

async fn start_invites(app: &TestApp, owner: &str, poll: &str, n: usize) -> Reply {
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

/// The cards of a ZIP: entry name → the URL its QR code encodes.
fn cards_of(zip: &[u8]) -> Vec<(String, String)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .unwrap_or_else(|e| panic!("not a ZIP: {e}"));
    (0..archive.len())
        .map(|i| {
            let mut entry = archive
                .by_index(i)
                .unwrap_or_else(|e| panic!("entry {i}: {e}"));
            let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
            let mut png = Vec::new();
            entry
                .read_to_end(&mut png)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let url = decode_qr(&png).unwrap_or_else(|| panic!("{name}: no readable QR code"));
            (name, url)
        })
        .collect()
}

fn token_of(url: &str, base: &str) -> String {
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
        assert!(
            name.contains(&format!(
                "guest-{}",
                invite.body["guest_name"]
                    .as_str()
                    .unwrap_or("?")
                    .trim_start_matches("Guest ")
            )),
            "{name}"
        );
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

/// Starting a job costs three storage calls (rate counter, poll, one transaction) and one queue call per
/// ten chunks, whatever the number of guests; the same request within 24 hours finds the same
/// job, and another request (or the same one a day later) makes a new one.
async fn the_same_request_within_a_day_finds_the_same_job(app: TestApp) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let before = app.store().calls();
    let first = start_invites(&app, &owner, &poll, 10).await;
    assert_eq!(app.store().calls() - before, 3, "10 guests");
    let before = app.store().calls();
    start_invites(&app, &owner, &poll, 2000).await;
    assert_eq!(app.store().calls() - before, 3, "2,000 guests");

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

tally_tests::on_every_backend!(
    a_thousand_guests_end_to_end,
    the_same_request_within_a_day_finds_the_same_job,
    share_qr_codes_and_charts_are_jobs,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_are_signed_afresh_and_end_after_24_hours() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let id = start_invites(&app, &owner, &poll, 3).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
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
    let id = start_invites(&app, &owner, &poll, 2).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
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
    let id = start_invites(&app, &owner, &poll, 2).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.wait_for_job(&owner, &id, PATIENCE).await;
    let cards = cards_of(&app.download(&owner, &id).await);
    let token = token_of(&cards[0].1, &app.config.public_base_url);
    let as_guest = |poll: &str, token: &str| {
        app.post(&format!("/v1/polls/{poll}/votes"))
            .header("authorization", &format!("Invite {token}"))
            .json(json!({ "choices": ["o2"] }))
            .send()
    };
    // Signed-in users cannot vote in an invite-only poll; an invite works only in its poll.
    app.vote(&app.mint_token(), &poll, &["o1"])
        .await
        .expect_problem(403, "forbidden");
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

/// A file store that fails on purpose: every write, or one write once (a crash mid-chunk).
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn BlobStore>,
    puts: AtomicUsize,
    starts: AtomicUsize,
    fail_put: Option<usize>,
    always: bool,
}

impl Faulty {
    fn wrap(
        always: bool,
        fail_put: Option<usize>,
    ) -> (
        tally_tests::BlobWrapper,
        Arc<std::sync::Mutex<Option<Arc<Faulty>>>>,
    ) {
        let handle = Arc::new(std::sync::Mutex::new(None));
        let slot = handle.clone();
        let wrap: tally_tests::BlobWrapper = Arc::new(move |inner| {
            let faulty = Arc::new(Faulty {
                inner,
                puts: AtomicUsize::new(0),
                starts: AtomicUsize::new(0),
                fail_put,
                always,
            });
            if let Ok(mut s) = slot.lock() {
                *s = Some(faulty.clone());
            }
            faulty as Arc<dyn BlobStore>
        });
        (wrap, handle)
    }
}

#[async_trait]
impl BlobStore for Faulty {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> StoreResult<()> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst);
        if self.always || self.fail_put == Some(n) {
            return Err(StoreError::Unavailable(format!(
                "injected failure on put #{n}"
            )));
        }
        self.inner.put(key, bytes, content_type).await
    }
    async fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner.list(prefix).await
    }
    async fn start_upload(&self, key: &str, content_type: &str) -> StoreResult<String> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.inner.start_upload(key, content_type).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> StoreResult<String> {
        self.inner.upload_part(key, upload, number, bytes).await
    }
    async fn finish_upload(
        &self,
        key: &str,
        upload: &str,
        parts: Vec<(i32, String)>,
    ) -> StoreResult<()> {
        self.inner.finish_upload(key, upload, parts).await
    }
    async fn abort_upload(&self, key: &str, upload: &str) -> StoreResult<()> {
        self.inner.abort_upload(key, upload).await
    }
    async fn presign_get(&self, key: &str, valid_for: Duration) -> StoreResult<String> {
        self.inner.presign_get(key, valid_for).await
    }
}

async fn faulty_app(
    always: bool,
    fail_put: Option<usize>,
) -> (TestApp, Arc<std::sync::Mutex<Option<Arc<Faulty>>>>) {
    let clock = ManualClock::new();
    let mut options = StackOptions::local(Arc::new(clock.clone()));
    options.queue.visibility_timeout = Duration::from_millis(50);
    let (wrap, handle) = Faulty::wrap(always, fail_put);
    options.wrap_worker_blobs = Some(wrap);
    let config = Config::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}"));
    (
        TestApp::start_full(config, Storage::Memory, options, clock).await,
        handle,
    )
}

/// A job whose work vanished (its worker died on the last delivery, so nobody marked it
/// failed) does not show `running` forever: past its deadline it reads as failed, and says so.
/// The same request then starts a new job, and the old one, failed for good, can no longer
/// finish next to it (two ZIPs would give every guest two invites).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_nobody_finishes_fails_at_its_deadline() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await;
    let poll_id = invite_poll(&app, &owner.access_token).await;
    // Under the fingerprint the API gives a request for these two guests.
    let guests: Vec<tally::domain::Guest> = (0..2)
        .map(|i| tally::domain::Guest {
            name: format!("Guest {i}"),
            email: None,
        })
        .collect();
    let fingerprint = tally::domain::job::request_fingerprint(
        owner.user_id.parse().unwrap_or_default(),
        poll_id.parse().unwrap_or_default(),
        tally::domain::JobKind::Invites,
        &guests,
    );
    // Stored without any message: no worker will ever touch it.
    let job = stored_job(&app, &poll_id, 2, 1, &fingerprint).await;
    assert_eq!(
        start_invites(&app, &owner.access_token, &poll_id, 2)
            .await
            .body["id"],
        job.id.to_string(),
        "the same request finds the job under way"
    );
    let path = format!("/v1/jobs/{}", job.id);
    let read = || app.get(&path).bearer(&owner.access_token).send();
    assert_eq!(read().await.expect(200).body["status"], "queued");
    app.clock
        .advance(tally::domain::job::JOB_DEADLINE - time::Duration::minutes(1));
    assert_eq!(read().await.expect(200).body["status"], "queued");
    app.clock.advance(time::Duration::minutes(1));
    let overdue = read().await.expect(200);
    assert_eq!(overdue.body["status"], "failed");
    assert_eq!(overdue.body["error"], tally::domain::job::OVERDUE);
    app.get(&format!("{path}/download"))
        .bearer(&owner.access_token)
        .send()
        .await
        .expect_problem(409, "job-failed");

    let retry = start_invites(&app, &owner.access_token, &poll_id, 2).await;
    assert_ne!(retry.body["id"], job.id.to_string());
    let stored = tally::ports::JobStore::job(app.store(), job.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the old job"));
    assert_eq!(stored.error.as_deref(), Some(tally::domain::job::OVERDUE));
    // A worker of the old job that finishes late cannot complete it any more.
    tally::ports::JobStore::complete_job(app.store(), job.id, "jobs/late.zip", app.now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read().await.expect(200).body["status"], "failed");
}

/// Under Lambda's deadline the render handler starts messages only in the first half of the
/// invocation: later ones go back to the queue unstarted (a message that finishes a job builds
/// its ZIP, which must not be cut off by the timeout), except one on its last delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_messages_are_handed_back_unstarted() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};

    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await;
    let poll_id = invite_poll(&app, &owner.access_token).await;
    let job = stored_job(&app, &poll_id, 3, 3, "deadline").await;
    let record = |chunk: u32, receives: u32| {
        let body = tally::ports::RenderMessage {
            job_id: job.id,
            chunk,
            start: chunk,
            guests: vec![tally::domain::Guest {
                name: format!("Guest {chunk}"),
                email: None,
            }],
            request_id: None,
        };
        let mut message = SqsMessage::default();
        message.message_id = Some(format!("m{chunk}"));
        message.body = serde_json::to_string(&body).ok();
        message.attributes = std::collections::HashMap::from([(
            "ApproximateReceiveCount".to_owned(),
            receives.to_string(),
        )]);
        message
    };
    let mut event = SqsEvent::default();
    // Chunk 2 is on its fifth (last) delivery.
    event.records = vec![record(0, 1), record(1, 1), record(2, 5)];
    let worker = &app.stack.worker;
    let response = worker
        .handle_within(event, Some(std::time::SystemTime::now()))
        .await;
    let handed_back: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        handed_back,
        ["m1"],
        "the first and the last-chance message ran"
    );
    let counted = tally::ports::JobStore::job(app.store(), job.id)
        .await
        .ok()
        .flatten()
        .map(|j| j.chunks_done);
    assert_eq!(counted, Some(2));

    // With the whole invocation ahead, the handed-back message runs and finishes the job.
    let mut again = SqsEvent::default();
    again.records = vec![record(1, 2)];
    let far = std::time::SystemTime::now() + Duration::from_secs(120);
    assert!(
        worker
            .handle_within(again, Some(far))
            .await
            .batch_item_failures
            .is_empty()
    );
    let id = job.id.to_string();
    assert_eq!(
        app.wait_for_job(&owner.access_token, &id, PATIENCE)
            .await
            .body["status"],
        "done"
    );
}

/// A message that fails on every delivery goes to the dead-letter queue after the fifth, and
/// the owner reads why the job failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_lands_in_the_dead_letter_queue_and_fails_the_job() {
    let (app, faulty) = faulty_app(true, None).await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let id = start_invites(&app, &owner, &poll, 5).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let failed = app.wait_for_job(&owner, &id, PATIENCE).await;
    assert_eq!(failed.body["status"], "failed", "{:#}", failed.body);
    let reason = failed.body["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Storage") && !reason.contains("injected"),
        "a reason for people: {reason}"
    );
    for _ in 0..200 {
        if app.stack.queue.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = app.stack.queue.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains(&id));
    let attempts = faulty
        .lock()
        .ok()
        .and_then(|f| f.as_ref().map(|f| f.puts.load(Ordering::SeqCst)))
        .unwrap_or(0);
    assert_eq!(
        attempts, 5,
        "one failed card write per delivery, five deliveries"
    );
    // Its download says the job failed and why, instead of "not ready" forever.
    let download = app
        .get(&format!("/v1/jobs/{id}/download"))
        .bearer(&owner)
        .send()
        .await
        .expect_problem(409, "job-failed");
    let detail = download.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(reason), "{detail}");
    // The same request again does not answer with the failed job: it starts a new one, and
    // two retries at once agree on that one new job.
    let (retry, twin) = tokio::join!(
        start_invites(&app, &owner, &poll, 5),
        start_invites(&app, &owner, &poll, 5)
    );
    assert_ne!(retry.body["id"], failed.body["id"], "{:#}", retry.body);
    assert_ne!(retry.body["status"], "failed", "{:#}", retry.body);
    assert_eq!(twin.body["id"], retry.body["id"]);
    let retried = retry.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        app.wait_for_job(&owner, &retried, PATIENCE).await.body["status"],
        "failed",
        "the store still fails every write"
    );
    for _ in 0..200 {
        if app.stack.queue.in_flight() == 0 && app.stack.queue.dead_letters().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.stack.queue.dead_letters().len(), 2);
    // A malformed message is retried and dead-lettered too, without touching any job.
    app.stack
        .queue
        .send_raw("not json".into())
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..200 {
        if app.stack.queue.dead_letters().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.stack.queue.dead_letters().len(), 3);
}

/// The worker dies (a write fails) in the middle of a chunk; the chunk is delivered again and
/// the job completes with every card exactly once and every invite voting exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_chunk_then_redelivery_loses_and_duplicates_nothing() {
    let (app, faulty) = faulty_app(false, Some(137)).await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let id = start_invites(&app, &owner, &poll, 250).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let done = app.wait_for_job(&owner, &id, PATIENCE).await;
    assert_eq!(
        (done.body["status"].as_str(), done.body["done"].as_u64()),
        (Some("done"), Some(250))
    );
    let puts = faulty
        .lock()
        .ok()
        .and_then(|f| f.as_ref().map(|f| f.puts.load(Ordering::SeqCst)))
        .unwrap_or(0);
    assert!(
        puts > 250,
        "the failed chunk was written again ({puts} writes)"
    );
    let cards = cards_of(&app.download(&owner, &id).await);
    let urls: HashSet<_> = cards.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!((cards.len(), urls.len()), (250, 250));
    for (_, url) in &cards {
        let token = token_of(url, &app.config.public_base_url);
        app.post(&format!("/v1/polls/{poll}/votes"))
            .header("authorization", &format!("Invite {token}"))
            .json(json!({ "choices": ["o1"] }))
            .send()
            .await
            .expect(201);
    }
    assert_eq!(app.results(&owner, &poll).await.body["total"], 250);
}

/// The sample SQS event in `events/` delivered twice, and twice at once: the chunk counts
/// once, and the ZIP is started exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_chunk_counts_once_and_the_zip_is_built_once() {
    let (app, faulty) = faulty_app(false, None).await;
    let owner = app.sign_up("owner@example.com").await;
    let poll_id = invite_poll(&app, &owner.access_token).await;
    // A job made through the store, so the test alone delivers its messages.
    let job = stored_job(&app, &poll_id, 2, 1, "fingerprint").await;
    let raw = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../events/render-invites-chunk.json"),
    )
    .unwrap_or_default()
    .replace("5f0c8a4e-1b7d-4c39-9e2a-7d3b6a0c1f00", &job.id.to_string());
    let event = || {
        serde_json::from_str::<tally_tests::SqsEvent>(&raw).unwrap_or_else(|e| panic!("event: {e}"))
    };
    let worker = &app.stack.worker;
    let (a, b) = tokio::join!(worker.handle(event()), worker.handle(event()));
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    let again = worker.handle(event()).await;
    assert!(again.batch_item_failures.is_empty());

    let read = app
        .get(&format!("/v1/jobs/{}", job.id))
        .bearer(&owner.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(
        (read.body["status"].as_str(), read.body["done"].as_u64()),
        (Some("done"), Some(2))
    );
    let starts = faulty
        .lock()
        .ok()
        .and_then(|f| f.as_ref().map(|f| f.starts.load(Ordering::SeqCst)))
        .unwrap_or(0);
    assert_eq!(starts, 1, "the ZIP was started {starts} times");
    let cards = cards_of(&app.download(&owner.access_token, &job.id.to_string()).await);
    let names: Vec<_> = cards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["00000-ann-example.png", "00001-bob-example.png"]);
}
