//! The render worker's failures through the API and the worker itself: a job nobody finishes,
//! Lambda's deadline, a message that always fails (the dead-letter queue), a crash in the
//! middle of a chunk, and redeliveries. Jobs the worker must not receive on its own are stored
//! directly, made by the same `JobPlan` the route uses.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tally::clock::ManualClock;
use tally::config::Config;
use tally::domain::Guest;
use tally::domain::job::CHUNK_SIZE;
use tally::jobs::{JobPlan, JobRequest};
use tally::objects::ObjectKey;
use tally::ports::{BlobStore, StoreError, StoreResult, Upload};
use tally_tests::{StackOptions, Storage, TestApp};

use super::jobs::{PATIENCE, cards_of, invite_poll, start_invites, started_invites, token_of};

/// An invites job for `guests` guests named as the API's helper names them, in chunks of
/// `chunk_size`, made as the route makes it and stored directly with no message queued: the
/// test decides what, if anything, its worker receives.
async fn stored_job(app: &TestApp, poll_id: &str, guests: usize, chunk_size: usize) -> JobPlan {
    let poll = tally::ports::PollStore::poll(app.store(), poll_id.parse().unwrap_or_default())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("poll {poll_id}"));
    let guests: Vec<Guest> = (0..guests)
        .map(|i| Guest {
            name: format!("Guest {i}"),
            email: None,
        })
        .collect();
    let plan = JobPlan::chunked(
        &poll,
        JobRequest::Invites(&guests),
        chunk_size,
        app.now(),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    tally::ports::JobStore::create_job(
        app.store(),
        &plan.job,
        &plan.fingerprint,
        app.now(),
        None,
        100,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    plan
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
    fn wrap(always: bool, fail_put: Option<usize>) -> (tally_tests::BlobWrapper, FaultyHandle) {
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
    async fn start_upload(&self, key: &str, content_type: &str) -> StoreResult<Upload> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.inner.start_upload(key, content_type).await
    }
    async fn upload_part(&self, upload: &Upload, n: i32, bytes: Vec<u8>) -> StoreResult<String> {
        self.inner.upload_part(upload, n, bytes).await
    }
    async fn finish_upload(&self, upload: &Upload, parts: Vec<(i32, String)>) -> StoreResult<()> {
        self.inner.finish_upload(upload, parts).await
    }
    async fn abort_upload(&self, upload: &Upload) -> StoreResult<()> {
        self.inner.abort_upload(upload).await
    }
    async fn presign_get(&self, key: &str, valid_for: Duration) -> StoreResult<String> {
        self.inner.presign_get(key, valid_for).await
    }
}

/// Where a test finds the worker's `Faulty` store once the stack has made it.
type FaultyHandle = Arc<std::sync::Mutex<Option<Arc<Faulty>>>>;

impl Faulty {
    /// One of the store's counters, 0 before the stack made the store.
    fn count(handle: &FaultyHandle, counter: impl Fn(&Faulty) -> &AtomicUsize) -> usize {
        handle
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|f| counter(f).load(Ordering::SeqCst)))
            .unwrap_or(0)
    }
}

async fn faulty_app(always: bool, fail_put: Option<usize>) -> (TestApp, FaultyHandle) {
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
    // Under the fingerprint the API gives a request for these two guests, stored without any
    // message: no worker will ever touch it.
    let job = stored_job(&app, &poll_id, 2, CHUNK_SIZE).await.job;
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
    let late = ObjectKey::Zip { job: job.id }.to_string();
    tally::ports::JobStore::complete_job(app.store(), job.id, &late, app.now())
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
    // Three chunks of one guest each.
    let plan = stored_job(&app, &poll_id, 3, 1).await;
    let job = &plan.job;
    let record = |chunk: usize, receives: u32| {
        let mut message = SqsMessage::default();
        message.message_id = Some(format!("m{chunk}"));
        message.body = serde_json::to_string(&plan.messages[chunk]).ok();
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
    let id = started_invites(&app, &owner, &poll, 5).await;
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
    let attempts = Faulty::count(&faulty, |f| &f.puts);
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
}

/// An unreadable message goes to the dead-letter queue on its first delivery: with a
/// visibility timeout of a minute, five deliveries would take four minutes, and this waits
/// two seconds at most. One that still names its job fails that job at once, since the job
/// can never finish without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_message_is_dead_lettered_on_its_first_delivery() {
    let clock = ManualClock::new();
    let mut options = StackOptions::local(Arc::new(clock.clone()));
    options.queue.visibility_timeout = Duration::from_secs(60);
    let config = Config::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::start_full(config, Storage::Memory, options, clock).await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let plan = stored_job(&app, &poll, 3, CHUNK_SIZE).await;
    let job = plan.job.id.to_string();

    app.stack
        .queue
        .send_raw("not json".into())
        .unwrap_or_else(|e| panic!("{e}"));
    let naming_its_job = json!({ "job_id": job, "chunk": "not a number" }).to_string();
    app.stack
        .queue
        .send_raw(naming_its_job.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..100 {
        if app.stack.queue.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.stack.queue.in_flight(), 0, "both left the render queue");
    let mut dead = app.stack.queue.dead_letters();
    dead.sort();
    let mut expected = vec!["not json".to_owned(), naming_its_job];
    expected.sort();
    assert_eq!(dead, expected);

    let failed = app
        .get(&format!("/v1/jobs/{job}"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    assert_eq!(failed.body["status"], "failed", "{:#}", failed.body);
    assert_eq!(
        failed.body["error"], "A work item of this job could not be read.",
        "{:#}",
        failed.body
    );
}

/// The worker dies (a write fails) in the middle of a chunk; the chunk is delivered again and
/// the job completes with every card exactly once and every invite voting exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_chunk_then_redelivery_loses_and_duplicates_nothing() {
    let (app, faulty) = faulty_app(false, Some(137)).await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;
    let id = started_invites(&app, &owner, &poll, 250).await;
    let done = app.wait_for_job(&owner, &id, PATIENCE).await;
    assert_eq!(
        (done.body["status"].as_str(), done.body["done"].as_u64()),
        (Some("done"), Some(250))
    );
    let puts = Faulty::count(&faulty, |f| &f.puts);
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
    assert_eq!(app.settled_results(&owner, &poll).await.body["total"], 250);
}

/// The sample SQS event in `events/` delivered twice, and twice at once: the chunk counts
/// once, and the ZIP is started exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_chunk_counts_once_and_the_zip_is_built_once() {
    let (app, faulty) = faulty_app(false, None).await;
    let owner = app.sign_up("owner@example.com").await;
    let poll_id = invite_poll(&app, &owner.access_token).await;
    // A job made through the store, so the test alone delivers its messages.
    let job = stored_job(&app, &poll_id, 2, CHUNK_SIZE).await.job;
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
    let starts = Faulty::count(&faulty, |f| &f.starts);
    assert_eq!(starts, 1, "the ZIP was started {starts} times");
    let cards = cards_of(&app.download(&owner.access_token, &job.id.to_string()).await);
    let names: Vec<_> = cards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["00000-ann-example.png", "00001-bob-example.png"]);
}

/// A file store whose writes wait until the test opens its gate: the jobs that reach it stay
/// in flight (queued or running) for as long as the test needs.
#[derive(Debug)]
struct Held {
    inner: Arc<dyn BlobStore>,
    open: tokio::sync::watch::Receiver<bool>,
}

#[async_trait]
impl BlobStore for Held {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> StoreResult<()> {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.inner.put(key, bytes, content_type).await
    }
    async fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner.list(prefix).await
    }
    async fn start_upload(&self, key: &str, content_type: &str) -> StoreResult<Upload> {
        self.inner.start_upload(key, content_type).await
    }
    async fn upload_part(&self, upload: &Upload, n: i32, bytes: Vec<u8>) -> StoreResult<String> {
        self.inner.upload_part(upload, n, bytes).await
    }
    async fn finish_upload(&self, upload: &Upload, parts: Vec<(i32, String)>) -> StoreResult<()> {
        self.inner.finish_upload(upload, parts).await
    }
    async fn abort_upload(&self, upload: &Upload) -> StoreResult<()> {
        self.inner.abort_upload(upload).await
    }
    async fn presign_get(&self, key: &str, valid_for: Duration) -> StoreResult<String> {
        self.inner.presign_get(key, valid_for).await
    }
}

/// An invites job started through the API, whatever the answer.
async fn try_invites(app: &TestApp, owner: &str, poll: &str, n: usize) -> tally_tests::Reply {
    let guests: Vec<_> = (0..n)
        .map(|i| json!({ "name": format!("Guest {i}") }))
        .collect();
    app.post(&format!("/v1/polls/{poll}/invites"))
        .bearer(owner)
        .json(json!({ "guests": guests }))
        .send()
        .await
}

/// A user has at most `TALLY_RENDER_JOBS_IN_FLIGHT` jobs queued or running: the next start is
/// 429 `jobs-in-flight` and stores nothing, a replay of an accepted request still answers with
/// its job, starts at once cannot together pass the limit, a job refused by the daily quota
/// after it took its slot gives it back, slots of jobs nobody finished lapse at the job
/// deadline, and a job that ends frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_in_flight_per_user_are_bounded_exactly() {
    let clock = ManualClock::new();
    let mut options = StackOptions::local(Arc::new(clock.clone()));
    // Held deliveries must not be redelivered meanwhile: the gate, not the queue, decides.
    options.queue.visibility_timeout = Duration::from_secs(600);
    let (gate, open) = tokio::sync::watch::channel(false);
    options.wrap_worker_blobs = Some(Arc::new(move |inner| {
        Arc::new(Held {
            inner,
            open: open.clone(),
        }) as Arc<dyn BlobStore>
    }));
    let config = Config::from_lookup(|name| match name {
        "TALLY_RENDER_JOBS_IN_FLIGHT" => Some("2".to_owned()),
        "TALLY_RENDER_GUESTS_PER_DAY" => Some("30".to_owned()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::start_full(config, Storage::Memory, options, clock).await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = invite_poll(&app, &owner).await;

    let first = started_invites(&app, &owner, &poll, 1).await;
    started_invites(&app, &owner, &poll, 2).await;
    let calls = app.store().calls();
    let over = try_invites(&app, &owner, &poll, 3)
        .await
        .expect_problem(429, "jobs-in-flight");
    let detail = over.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("2 jobs"), "{detail}");
    // Refused in the start's one transaction: rate counter, poll, transaction, no more.
    assert_eq!(app.store().calls() - calls, 3);
    // The same request as an accepted one is not a new job: it answers with its job.
    let replay = start_invites(&app, &owner, &poll, 1).await;
    assert_eq!(replay.body["id"], first.as_str());

    // A job over the daily quota took a slot before the quota refused it, and gave it back:
    // its owner still has room for two.
    let big = app.sign_up("big@example.com").await.access_token;
    let big_poll = invite_poll(&app, &big).await;
    try_invites(&app, &big, &big_poll, 31)
        .await
        .expect_problem(429, "render-quota");
    started_invites(&app, &big, &big_poll, 1).await;
    started_invites(&app, &big, &big_poll, 2).await;

    // Six starts at once by a user with room for two: exactly two are accepted.
    let racer = app.sign_up("racer@example.com").await.access_token;
    let polls = [
        invite_poll(&app, &racer).await,
        invite_poll(&app, &racer).await,
    ];
    let starts = (0..6).map(|i| try_invites(&app, &racer, &polls[i % 2], i + 1));
    let mut statuses: Vec<u16> = futures::future::join_all(starts)
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 202, 429, 429, 429, 429]);

    // Jobs nobody finished (their worker died) give their slots back at their deadline; one
    // start frees both and takes one, so the next fills the limit and the one after is over.
    app.clock.advance(tally::domain::job::JOB_DEADLINE);
    let late = started_invites(&app, &owner, &poll, 4).await;
    let later = started_invites(&app, &owner, &poll, 5).await;
    try_invites(&app, &owner, &poll, 6)
        .await
        .expect_problem(429, "jobs-in-flight");

    // Finished jobs free their slots.
    let _ = gate.send(true);
    for id in [&late, &later] {
        assert_eq!(
            app.wait_for_job(&owner, id, PATIENCE).await.body["status"],
            "done"
        );
    }
    try_invites(&app, &owner, &poll, 6).await.expect(202);
    try_invites(&app, &owner, &poll, 7).await.expect(202);
}
