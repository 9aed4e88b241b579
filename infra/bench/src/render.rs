//! Rendering: invite cards per second per core, and a 10,000-guest invites job on the
//! dev-server stack (the in-process queue feeding the render worker), whose wall time, S3
//! requests and peak RSS are measured in a child process so that the figures are that job's
//! alone.

use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use tally::domain::{Card, GuestId, PollId};
use tally::jobs::{JobPlan, JobRequest};
use tally::ports::{JobCreated, JobStore, PollStore, RenderQueue};
use tally::render::{CardLayout, CardText};

use crate::machine;
use crate::report::{self, Section};
use crate::stack::{self, HttpClient, Served};

/// A question as long as most real ones, drawn on every card.
const QUESTION: &str = "Which evening suits you for the team dinner in December?";
/// The longest a job may take before the bench gives up on it.
const JOB_LIMIT: Duration = Duration::from_secs(900);

/// An invite URL of the real shape: the dev server's origin and a 43-character token.
fn invite_url(i: usize) -> String {
    format!("http://127.0.0.1:3000/i/{:0>43}", i)
}

fn guest_name(i: usize) -> String {
    format!("Guest {i:05} Example")
}

/// Cards each thread renders before it is timed: the first cards of a thread fill its caches
/// (shape plans, glyph coverage, the QR code's blank per version), as the first chunk on a
/// worker thread does once.
const WARM_UP: usize = 100;
/// Cards each thread is timed over.
const CARDS_PER_THREAD: usize = 2_000;

/// Renders `WARM_UP` and then `count` distinct cards on this thread, from guest `from`, and
/// returns how long the `count` took and their size in bytes.
fn render_cards(from: usize, count: usize) -> Result<(Duration, usize), String> {
    // As the worker does: what the cards share is set once, then each guest's card.
    let layout = CardLayout::new(QUESTION, None);
    let card = |i: usize| {
        let (name, url) = (guest_name(i), invite_url(i));
        layout
            .png(&CardText {
                guest_name: &name,
                url: &url,
                short_url: None,
            })
            .map(|png| png.len())
            .map_err(|e| e.to_string())
    };
    for i in from..from + WARM_UP {
        card(i)?;
    }
    let started = Instant::now();
    let mut bytes = 0;
    for i in from + WARM_UP..from + WARM_UP + count {
        bytes += card(i)?;
    }
    Ok((started.elapsed(), bytes))
}

/// Cards per second on `threads` threads at once (one per core), counted from the slowest
/// thread's time, and the cards' average size.
fn cards_per_second(threads: usize, per_thread: usize) -> Result<(f64, usize), String> {
    let workers: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || render_cards(t * (WARM_UP + per_thread), per_thread)))
        .collect();
    let (mut slowest, mut bytes) = (Duration::ZERO, 0);
    for worker in workers {
        let (took, size) = worker
            .join()
            .map_err(|_| "a render thread panicked".to_owned())??;
        slowest = slowest.max(took);
        bytes += size;
    }
    let cards = threads * per_thread;
    Ok((cards as f64 / slowest.as_secs_f64(), bytes / cards.max(1)))
}

/// What the child process reports about its job.
#[derive(Debug, Clone)]
pub struct JobFigures {
    pub guests: usize,
    pub wall: Duration,
    /// From the start until every card was counted (`done == total`), as first seen by the
    /// 100 ms polling; the rest of the wall time is the ZIP step.
    pub cards_done: Option<Duration>,
    pub peak_rss_kib: u64,
    pub baseline_rss_kib: u64,
    pub zip_bytes: u64,
    /// The render worker's S3 requests for the job: billed as writes (objects, the ZIP's
    /// multipart upload) and as reads, and of those writes the `PutObject`s.
    pub s3_writes: u64,
    pub s3_reads: u64,
    pub s3_puts: u64,
    pub via_http: bool,
    pub http_refusal: Option<String>,
}

/// The medians of the render benchmarks.
#[derive(Debug, Clone)]
pub struct RenderResult {
    pub runs: usize,
    pub cores: usize,
    pub card_bytes: usize,
    pub cards_per_s_one: f64,
    pub cards_per_s_all: f64,
    pub jobs: Vec<JobFigures>,
    /// Whether the job's stack kept its data on disk, as the dev server does.
    pub on_disk: bool,
}

/// Runs the in-process render benchmarks `runs` times, then the job `job_runs` times, each
/// in a child process running `tally-bench render-job` (with its data on disk if `on_disk`).
pub fn run(
    runs: usize,
    job_runs: usize,
    guests: usize,
    on_disk: bool,
) -> Result<RenderResult, String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!("tally-bench: render: cards on one core, then on {cores}");
    let (mut one, mut all, mut card_bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let (rate, bytes) = cards_per_second(1, CARDS_PER_THREAD)?;
        one.push(rate);
        card_bytes = bytes;
        all.push(cards_per_second(cores, CARDS_PER_THREAD)?.0);
    }
    let mut jobs = Vec::new();
    for run in 0..job_runs {
        eprintln!(
            "tally-bench: render: {guests}-guest job, run {}/{job_runs} (child process)",
            run + 1
        );
        jobs.push(job_in_child(guests, on_disk)?);
    }
    Ok(RenderResult {
        runs,
        cores,
        card_bytes,
        cards_per_s_one: report::median(&one),
        cards_per_s_all: report::median(&all),
        jobs,
        on_disk,
    })
}

/// Runs `tally-bench render-job` and reads the one JSON line it prints.
fn job_in_child(guests: usize, on_disk: bool) -> Result<JobFigures, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new(exe);
    command.args(["render-job", "--guests", &guests.to_string()]);
    if on_disk {
        command.arg("--disk");
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start the job's child process: {e}"))?;
    let started = Instant::now();
    // Polled rather than waited on, so that a stuck child is killed instead of hanging the
    // bench. Its stdout is one short line, which the pipe holds until it is read.
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > JOB_LIMIT + Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the job's child process ran past {JOB_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut out).map_err(|e| e.to_string())?;
    }
    if !status.success() {
        return Err(format!("the job's child process failed ({status}): {out}"));
    }
    let line: serde_json::Value = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("the job's child process printed no figures: {out:?}"))?;
    let number = |key: &str| line[key].as_u64().ok_or(format!("no {key} in {line}"));
    Ok(JobFigures {
        guests: usize::try_from(number("guests")?).map_err(|e| e.to_string())?,
        wall: Duration::from_micros(number("wall_us")?),
        cards_done: line["cards_done_us"].as_u64().map(Duration::from_micros),
        peak_rss_kib: number("peak_rss_kib")?,
        baseline_rss_kib: number("baseline_rss_kib")?,
        zip_bytes: number("zip_bytes")?,
        s3_writes: number("s3_writes")?,
        s3_reads: number("s3_reads")?,
        s3_puts: number("s3_puts")?,
        via_http: line["via_http"].as_bool().unwrap_or(false),
        http_refusal: line["http_refusal"].as_str().map(str::to_owned),
    })
}

/// The child's side: one dev-server stack, one invite-only poll, one job of `guests` guests,
/// followed through `GET /v1/jobs/{id}` until done; then the checks and one JSON line on
/// stdout. Peak RSS is read before the ZIP is downloaded, so the download (the bench acting
/// as a client) does not count.
pub async fn job_child(guests: usize, on_disk: bool) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let (stack, _config, issuer) = if on_disk {
        stack::start_stack_on_disk(scratch.path()).await?
    } else {
        stack::start_stack().await?
    };
    let served = Served::start(stack.app.clone()).await?;
    let client = stack::http_client();
    let base = served.base.clone();
    let (owner_id, owner) = stack::mint(&issuer)?;
    let poll = stack::create_poll(
        &client,
        &base,
        &owner,
        &json!({ "question": QUESTION, "options": ["Thursday", "Friday"], "visibility": "invite" }),
    )
    .await?;
    let body = json!({
        "guests": (0..guests).map(|i| json!({ "name": guest_name(i) })).collect::<Vec<_>>()
    });
    let (baseline_rss_kib, _) = machine::rss_kib();
    let started = Instant::now();
    let reply = stack::send(
        &client,
        stack::request(
            Method::POST,
            &format!("{base}/v1/polls/{poll}/invites"),
            Some(&owner),
            Some(&body),
        )?,
        Duration::from_secs(60),
    )
    .await?;
    let (job, via_http, http_refusal) = if reply.status.as_u16() == 202 {
        let id = reply.json()["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or("the job has no id")?;
        (id, true, None)
    } else if reply.status.as_u16() == 413 {
        // The API refuses the request body before the route sees it. The job the route would
        // have started is started with the route's own steps (one transaction, the same
        // messages on the same queue), so the render worker's work is the same; the report
        // says that the HTTP request was refused.
        let refusal = format!(
            "{} for a {}-byte body",
            reply.status,
            body.to_string().len()
        );
        let id = start_job_directly(&stack, owner_id, &poll, guests).await?;
        (id, false, Some(refusal))
    } else {
        return Err(format!(
            "start the job: {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
    };
    let (status, cards_done_at) = wait_for_job(&client, &base, &owner, &job).await?;
    let wall = started.elapsed();
    let cards_done = cards_done_at.map(|at| at.duration_since(started));
    let (_, peak_rss_kib) = machine::rss_kib();
    let s3 = stack.worker_blob_calls.snapshot();
    let done = status["done"].as_u64().unwrap_or(0);
    if status["status"] != "done" || done != guests as u64 || status["failed"] != 0 {
        return Err(format!("the job did not complete every card: {status}"));
    }
    let zip = download(&client, &base, &owner, &job).await?;
    let archive = zip::ZipArchive::new(std::io::Cursor::new(&zip)).map_err(|e| e.to_string())?;
    // One card per guest and the manifest.
    if archive.len() != guests + 1 {
        return Err(format!(
            "the ZIP holds {} entries for {guests} guests",
            archive.len()
        ));
    }
    let figures = json!({
        "guests": guests,
        "wall_us": u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
        "cards_done_us": cards_done.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        "peak_rss_kib": peak_rss_kib,
        "baseline_rss_kib": baseline_rss_kib,
        "zip_bytes": zip.len(),
        "s3_writes": s3.writes(),
        "s3_reads": s3.reads(),
        "s3_puts": s3.put,
        "via_http": via_http,
        "http_refusal": http_refusal,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{figures}").map_err(|e| e.to_string())?;
    served.stop().await;
    stack.shutdown().await;
    Ok(())
}

/// What `POST /v1/polls/{id}/invites` does after parsing its body (`shared/src/http/jobs.rs`):
/// the job `tally::jobs::JobPlan` makes of the request, stored, and its chunks of guests as
/// render messages on the stack's queue.
async fn start_job_directly(
    stack: &tally_dev::Stack,
    owner: tally::domain::UserId,
    poll: &str,
    guests: usize,
) -> Result<String, String> {
    let poll_id = PollId::from_str(poll).map_err(|e| e.to_string())?;
    let poll = stack
        .store
        .poll(poll_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the poll is gone")?;
    // The route's ownership check: the job is the poll owner's.
    if !poll.is_owned_by(owner) {
        return Err("the poll is not the owner's".into());
    }
    // Cards as the guest list makes them: a guest id and generation each (the bench renders
    // them without a list, since only the render work is measured).
    let guests: Vec<Card> = (0..guests)
        .map(|i| Card {
            guest: GuestId::from_stored(format!("benchguest{i:012}")),
            generation: 0,
            name: guest_name(i),
            email: None,
        })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let plan =
        JobPlan::new(&poll, JobRequest::Invites(&guests), now, None).map_err(|e| e.to_string())?;
    match stack
        .store
        // The bench's one job is the user's only one in flight.
        .create_job(&plan.job, &plan.fingerprint, now, None, 1)
        .await
        .map_err(|e| e.to_string())?
    {
        JobCreated::New => {}
        JobCreated::Existing(_) => return Err("the same job existed already".into()),
        JobCreated::Full(_) => return Err("the user had jobs in flight already".into()),
    }
    let queue: Arc<dyn RenderQueue> = Arc::new(stack.queue.clone());
    queue
        .send(&plan.messages)
        .await
        .map_err(|e| e.to_string())?;
    Ok(plan.job.id.to_string())
}

/// Follows the job until it is done or failed (bounded by [`JOB_LIMIT`]); returns its last
/// state and when every card was first seen counted while the job was still running.
async fn wait_for_job(
    client: &HttpClient,
    base: &str,
    owner: &str,
    job: &str,
) -> Result<(serde_json::Value, Option<Instant>), String> {
    let started = Instant::now();
    let mut cards_done = None;
    while started.elapsed() < JOB_LIMIT {
        let reply = stack::send(
            client,
            stack::request(
                Method::GET,
                &format!("{base}/v1/jobs/{job}"),
                Some(owner),
                None,
            )?,
            Duration::from_secs(30),
        )
        .await?
        .expect(200, "read the job")?;
        let status = reply.json();
        if matches!(status["status"].as_str(), Some("done" | "failed")) {
            return Ok((status, cards_done));
        }
        if cards_done.is_none() && status["done"].as_u64() >= status["total"].as_u64() {
            cards_done = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the job did not finish within {JOB_LIMIT:?}"))
}

/// The job's ZIP: the API's 302, then the presigned URL on the S3 engine.
async fn download(
    client: &HttpClient,
    base: &str,
    owner: &str,
    job: &str,
) -> Result<Vec<u8>, String> {
    let redirect = stack::send(
        client,
        stack::request(
            Method::GET,
            &format!("{base}/v1/jobs/{job}/download"),
            Some(owner),
            None,
        )?,
        Duration::from_secs(30),
    )
    .await?
    .expect(302, "download")?;
    let location = redirect
        .headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("the download has no Location")?
        .to_owned();
    let file = stack::send(
        client,
        stack::request(Method::GET, &location, None, None)?,
        Duration::from_secs(120),
    )
    .await?
    .expect(200, "GET the presigned URL")?;
    Ok(file.body.to_vec())
}

/// The report's section for these results.
pub fn section(r: &RenderResult) -> Section {
    let mut section = Section::new("Rendering", &["what", "figure", "notes"]);
    section.note(format!(
        "Cards: `tally::render::CardLayout::png`, one layout per thread (a {}-byte grayscale PNG on average: QR code of \
         a 67-character invite URL, name, question), timed over {} cards per thread after {} that fill its caches. \
         Medians of {} runs.",
        r.card_bytes, CARDS_PER_THREAD, WARM_UP, r.runs
    ));
    section.row(vec![
        "invite cards, one core".into(),
        format!("{} cards/s", report::grouped(r.cards_per_s_one)),
        "one thread".into(),
    ]);
    section.row(vec![
        format!("invite cards, all {} cores", r.cores),
        format!("{} cards/s", report::grouped(r.cards_per_s_all)),
        format!("{} threads", r.cores),
    ]);
    if let Some(first) = r.jobs.first() {
        let walls: Vec<Duration> = r.jobs.iter().map(|j| j.wall).collect();
        let peaks: Vec<f64> = r.jobs.iter().map(|j| j.peak_rss_kib as f64).collect();
        let bases: Vec<f64> = r.jobs.iter().map(|j| j.baseline_rss_kib as f64).collect();
        let wall_s = report::median_ms(&walls) / 1e3;
        section.row(vec![
            format!(
                "{}-guest invites job, wall time",
                report::grouped(first.guests as f64)
            ),
            format!(
                "{wall_s:.1} s ({} cards/s)",
                report::grouped(first.guests as f64 / wall_s)
            ),
            format!(
                "request to `status: done`, median of {} runs; ZIP {}",
                r.jobs.len(),
                report::mib(first.zip_bytes)
            ),
        ]);
        let zip_steps: Vec<f64> = r
            .jobs
            .iter()
            .filter_map(|j| j.cards_done.map(|c| j.wall.saturating_sub(c).as_secs_f64()))
            .collect();
        if zip_steps.len() == r.jobs.len() {
            let zip_s = report::median(&zip_steps);
            let cards_s = wall_s - zip_s;
            section.row(vec![
                "… of which: cards".into(),
                format!(
                    "{cards_s:.1} s ({} cards/s)",
                    report::grouped(first.guests as f64 / cards_s)
                ),
                "until every card is counted: render, one segment `PutObject` per chunk of \
                 100, its counter"
                    .into(),
            ]);
            section.row(vec![
                "… of which: the ZIP".into(),
                format!(
                    "{zip_s:.1} s ({} MiB/s)",
                    report::grouped(first.zip_bytes as f64 / (1024.0 * 1024.0) / zip_s)
                ),
                "one `GetObject` per chunk's segment, entries, manifest and central \
                 directory, multipart upload (±0.1 s)"
                    .into(),
            ]);
        }
        let writes: Vec<f64> = r.jobs.iter().map(|j| j.s3_writes as f64).collect();
        let reads: Vec<f64> = r.jobs.iter().map(|j| j.s3_reads as f64).collect();
        let puts: Vec<f64> = r.jobs.iter().map(|j| j.s3_puts as f64).collect();
        section.row(vec![
            format!(
                "{}-guest invites job, S3 requests",
                report::grouped(first.guests as f64)
            ),
            format!(
                "{} writes, {} reads",
                report::grouped(report::median(&writes)),
                report::grouped(report::median(&reads))
            ),
            format!(
                "the render worker's, counted at the S3 engine: {} `PutObject` (one segment \
                 per chunk), the rest the ZIP's multipart upload (start, parts, completion); \
                 reads are the ZIP builder's segment `GetObject`s",
                report::grouped(report::median(&puts))
            ),
        ]);
        section.row(vec![
            format!(
                "{}-guest invites job, peak RSS",
                report::grouped(first.guests as f64)
            ),
            format!("{:.0} MiB", report::median(&peaks) / 1024.0),
            format!(
                "VmHWM of the whole dev-server stack process (engines, API, worker); {:.0} MiB \
                 before the job started",
                report::median(&bases) / 1024.0
            ),
        ]);
        let engines = if r.on_disk {
            "its data on disk in a temporary folder, as the dev server keeps it (the engine's \
             SQLite file, the S3 folder, the queue's message files)"
        } else {
            "in-memory engines (the S3 engine writes to a temporary folder)"
        };
        section.note(format!(
            "Job: a child process (`tally-bench render-job`) starts the dev-server stack with \
             {engines}, serves it on loopback, creates an invite-only poll and starts the job, \
             then polls `GET /v1/jobs/{{id}}` every 100 ms; the in-process queue runs the \
             render worker with the dev server's settings (2 batches at a time). Afterwards \
             the ZIP is downloaded and must hold one card per guest and the manifest."
        ));
        if let Some(refusal) = r.jobs.iter().find_map(|j| j.http_refusal.as_ref()) {
            section.note(format!(
                "**The API refused the {}-guest request** (`POST /v1/polls/{{id}}/invites` \
                 answered {refusal}: the 64 KiB body limit is below what 10,000 guests need), so \
                 the bench started the same job with the route's own steps (the job \
                 transaction, then the same render messages on the same queue) and timed from \
                 there; the render work is identical.",
                report::grouped(first.guests as f64)
            ));
        }
        if !first.via_http && first.http_refusal.is_none() {
            section.note("The job was not started through HTTP.");
        }
    }
    section
}
