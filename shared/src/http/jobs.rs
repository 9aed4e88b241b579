//! The jobs function: start render jobs (invite cards, share QR code, results chart), follow
//! their progress, and download their file for 24 hours. The work itself happens in the render
//! function; a request here does a fixed number of storage calls whatever the job's size.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, Caller, NoIdempotencyKey, parse_id};
use super::gate::{Gate, gated};
use super::limits::Writer;
use super::openapi::{AuthErrors, BodyErrors, CommonErrors};
use super::views::JobView;
use super::{BodyLimit, RequestId};
use crate::domain::job::OVERDUE;
use crate::domain::{FieldErrors, Guest, Job, JobStatus, Poll, QrFormat, Tally, UserId};
use crate::error::ProblemDoc;
use crate::error::{ApiResult, AppError};
use crate::jobs::{JobPlan, JobRequest};
use crate::ports::{BallotStore, BlobStore, JobCreated, JobStore, PollStore, RenderQueue};

/// How long a download link (a presigned S3 URL) is valid: minutes, because
/// `GET /v1/jobs/{id}/download` signs a fresh one on every use.
pub const DOWNLOAD_LINK_SECONDS: u64 = 300;

/// The largest guest list body accepted, in bytes.
pub const INVITES_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What the jobs function holds: polls and tallies (read only), jobs, the file store it signs
/// downloads from, and the render queue it starts work on.
#[derive(Debug, Clone)]
pub struct JobsState {
    pub polls: Arc<dyn PollStore>,
    pub ballots: Arc<dyn BallotStore>,
    pub jobs: Arc<dyn JobStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<dyn RenderQueue>,
    pub gate: Gate,
    /// Guests one user's jobs may render per UTC day (`Config::render_guests_per_day`).
    pub guests_per_day: u64,
    /// Jobs one user may have queued or running at once (`Config::render_jobs_in_flight`).
    pub jobs_in_flight: u32,
}
gated!(JobsState);

impl JobsState {
    /// The state over one store that keeps polls, tallies and jobs.
    pub fn new<S: PollStore + BallotStore + JobStore + 'static>(
        store: Arc<S>,
        blobs: Arc<dyn BlobStore>,
        queue: Arc<dyn RenderQueue>,
        gate: Gate,
        guests_per_day: u64,
        jobs_in_flight: u32,
    ) -> Self {
        Self {
            polls: store.clone(),
            ballots: store.clone(),
            jobs: store,
            blobs,
            queue,
            gate,
            guests_per_day,
            jobs_in_flight,
        }
    }
}

pub fn routes(state: JobsState) -> OpenApiRouter {
    OpenApiRouter::new()
        // 10,000 guests with names and emails need more than the API's usual 64 KiB body
        // (about 300 KB typically, 3.6 MB at the length limits); API Gateway takes up to 10 MB.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(invite_guests))
                .layer(axum::extract::DefaultBodyLimit::max(INVITES_BODY_LIMIT))
                .layer(axum::Extension(BodyLimit(INVITES_BODY_LIMIT))),
        )
        .routes(routes!(share_qr))
        .routes(routes!(results_chart))
        .routes(routes!(read))
        .routes(routes!(download))
        .with_state(state)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    /// 1 to 10,000 guests.
    #[schema(min_items = 1, max_items = 10000, example = json!([{"name": "Ann"}, {"name": "Bo", "email": "bo@example.com"}]))]
    guests: Vec<GuestInput>,
}

/// A guest to invite.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GuestInput {
    /// Printed on the card; 1 to 100 characters once trimmed, not blank.
    #[schema(
        max_length = 100,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        example = "Ann"
    )]
    name: String,
    #[serde(default)]
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QrBody {
    /// The image format (default `png`).
    #[serde(default)]
    #[schema(value_type = Option<QrFormatName>)]
    format: Option<String>,
}

/// The formats of a share QR code, for the document (the body keeps a string so that any
/// other value gets a 422 naming the field).
#[derive(utoipa::ToSchema)]
#[schema(as = QrFormat)]
#[allow(dead_code)]
enum QrFormatName {
    #[schema(rename = "png")]
    Png,
    #[schema(rename = "svg")]
    Svg,
}

/// The poll a job is for: the owner's only (404 when hidden from the caller, 403 otherwise).
async fn owned_poll(state: &JobsState, user: UserId, raw_id: &str) -> ApiResult<Poll> {
    owned(state.polls.poll(parse_id(raw_id)?).await?, user)
}

/// The poll, if `user` owns it: 404 when it is missing or hidden from them, 403 otherwise.
fn owned(poll: Option<Poll>, user: UserId) -> ApiResult<Poll> {
    let poll = poll.ok_or(AppError::NotFound)?;
    if !poll.is_visible_to(user) {
        return Err(AppError::NotFound);
    }
    if !poll.is_owned_by(user) {
        return Err(AppError::Forbidden(
            "Only the poll's owner may start its jobs.",
        ));
    }
    Ok(poll)
}

/// Stores the job (or finds the one the same request made within 24 hours) and enqueues its
/// work. A new job takes one of its owner's in-flight slots in the same transaction, and is
/// refused (nothing stored) when they are all taken; every failure below frees the slot again.
/// Storage calls: one transaction (two when the slots are full but some lapsed), plus one
/// read when the job existed; queue calls: one
/// per ten messages, or per 256 KiB of them when they are large. A job that failed does not
/// answer for the same request: a retry makes a new one (one more transaction), so a failure
/// never blocks the request for a day.
async fn start(state: &JobsState, plan: JobPlan) -> ApiResult<Response> {
    let JobPlan {
        job,
        fingerprint,
        messages,
    } = plan;
    let fingerprint = fingerprint.as_str();
    let queue = &state.queue;
    let now = state.gate.now();
    let slots = state.jobs_in_flight;
    let mut created = state
        .jobs
        .create_job(&job, fingerprint, now, None, slots)
        .await?;
    if let JobCreated::Existing(id) = created {
        let existing = state.jobs.job(id).await?.ok_or(AppError::Conflict)?;
        if existing.status_at(now) != JobStatus::Failed {
            return accepted(&existing, now);
        }
        // An overdue job has no recorded failure: record it before replacing the job, so it
        // can no longer finish next to its replacement. It may have completed just now.
        if existing.error.is_none() && !state.jobs.fail_job(id, OVERDUE).await? {
            let current = state.jobs.job(id).await?.ok_or(AppError::Conflict)?;
            return accepted(&current, now);
        }
        created = state
            .jobs
            .create_job(&job, fingerprint, now, Some(id), slots)
            .await?;
    }
    let job = match created {
        // Nothing was stored: the owner's jobs in flight are at the limit.
        JobCreated::Full(_) => return Err(AppError::JobsInFlight { limit: slots }),
        // Another retry of the failed job won the race: answer with its job.
        JobCreated::Existing(id) => state.jobs.job(id).await?.ok_or(AppError::Conflict)?,
        JobCreated::New => {
            charge_quota(state, &job, now).await?;
            if let Err(e) = queue.send(&messages).await {
                // A job whose work was not all enqueued would never finish: say so on the job
                // and to the caller, who may retry.
                state
                    .jobs
                    .fail_job(job.id, "The work could not be queued; please try again.")
                    .await?;
                return Err(e.into());
            }
            job
        }
    };
    accepted(&job, now)
}

/// Charges a new job's size to its owner's render quota for the day (one conditional call), so
/// that one user cannot keep the render function busy for everyone: the quota bounds the
/// cards rendered per user, as the render event source's maximum concurrency bounds them for
/// all users together. Only a job that was created is charged, so a replay of the same
/// request (answered with its job) costs nothing. A job over the quota is marked failed
/// (its request marker then never answers with it) and nothing is queued.
async fn charge_quota(state: &JobsState, job: &Job, now: OffsetDateTime) -> ApiResult<()> {
    const DAY: i64 = 86_400;
    let day_start = now.unix_timestamp().div_euclid(DAY) * DAY;
    let scope = format!("render-guests:{}", job.owner_id);
    let taken = state
        .gate
        .counter
        .take(
            &scope,
            day_start,
            DAY,
            u64::from(job.total.max(1)),
            state.guests_per_day,
        )
        .await?;
    if taken.is_some() {
        return Ok(());
    }
    state
        .jobs
        .fail_job(job.id, "Over the daily render quota; nothing was rendered.")
        .await?;
    Err(AppError::RenderQuota {
        limit: state.guests_per_day,
        retry_after: u64::try_from(day_start + DAY - now.unix_timestamp())
            .unwrap_or(1)
            .max(1),
    })
}

/// The 202 answer for a job, with its URL in `Location`.
fn accepted(job: &Job, now: OffsetDateTime) -> ApiResult<Response> {
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((
        StatusCode::ACCEPTED,
        headers,
        axum::Json(JobView::new(job, now)),
    )
        .into_response())
}

/// Invites guests: one invite and one card each, then one ZIP of all cards.
#[utoipa::path(post, path = "/v1/polls/{id}/invites", operation_id = "createInviteJob", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")), request_body = InviteBody,
    responses((status = 202, description = "The job (the same one for the same request within 24 hours, unless it failed)", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 403, description = "The caller may see the poll but does not own it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll, or one hidden from the caller", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, BodyErrors, CommonErrors))]
async fn invite_guests(
    State(state): State<JobsState>,
    // The same request within 24 hours already finds the same job (by its content), so a key
    // adds nothing; it is refused rather than ignored, so that no client relies on it.
    _: NoIdempotencyKey,
    Writer(user): Writer,
    Path(id): Path<String>,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<InviteBody>,
) -> ApiResult<Response> {
    let poll = owned_poll(&state, user, &id).await?;
    let guests = Guest::parse_all(
        body.guests
            .into_iter()
            .map(|g| Guest {
                name: g.name,
                email: g.email,
            })
            .collect(),
    )?;
    let plan = JobPlan::new(
        &poll,
        JobRequest::Invites(&guests),
        state.gate.now(),
        request_id.map(|r| r.0.0),
    )
    .map_err(AppError::internal)?;
    start(&state, plan).await
}

/// The poll's share QR code, as PNG or SVG.
#[utoipa::path(post, path = "/v1/polls/{id}/qr", operation_id = "createQrJob", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")), request_body = QrBody,
    responses((status = 202, description = "The job (the same one for the same request within 24 hours, unless it failed)", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 403, description = "The caller may see the poll but does not own it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll, or one hidden from the caller", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, BodyErrors, CommonErrors))]
async fn share_qr(
    State(state): State<JobsState>,
    // The same request within 24 hours already finds the same job (by its content), so a key
    // adds nothing; it is refused rather than ignored, so that no client relies on it.
    _: NoIdempotencyKey,
    Writer(user): Writer,
    Path(id): Path<String>,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<QrBody>,
) -> ApiResult<Response> {
    let poll = owned_poll(&state, user, &id).await?;
    let format = match body.format.as_deref() {
        None | Some("png") => QrFormat::Png,
        Some("svg") => QrFormat::Svg,
        Some(_) => return Err(FieldErrors::single("format", "must be `png` or `svg`").into()),
    };
    single_file_job(&state, &poll, JobRequest::Qr(format), request_id).await
}

/// A PNG bar chart of the poll's results.
#[utoipa::path(post, path = "/v1/polls/{id}/chart", operation_id = "createChartJob", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")),
    responses((status = 202, description = "The job (the same one within 24 hours while the results are unchanged and it has not failed)", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 403, description = "The caller may see the poll but does not own it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll, or one hidden from the caller", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn results_chart(
    State(state): State<JobsState>,
    // The same request within 24 hours already finds the same job (by its content), so a key
    // adds nothing; it is refused rather than ignored, so that no client relies on it.
    _: NoIdempotencyKey,
    Writer(user): Writer,
    Path(id): Path<String>,
    request_id: Option<axum::Extension<RequestId>>,
) -> ApiResult<Response> {
    // The counts are read with the poll (one batch read instead of one item read): they are
    // part of the request's fingerprint, so asking again after new votes draws a new chart,
    // while a double click on unchanged results finds the chart already under way.
    let (poll, tally) = match state.ballots.poll_with_tally(parse_id(&id)?).await? {
        Some((poll, tally)) => (Some(poll), tally),
        None => (None, Tally::default()),
    };
    let poll = owned(poll, user)?;
    single_file_job(&state, &poll, JobRequest::Chart(&tally), request_id).await
}

async fn single_file_job(
    state: &JobsState,
    poll: &Poll,
    request: JobRequest<'_>,
    request_id: Option<axum::Extension<RequestId>>,
) -> ApiResult<Response> {
    let plan = JobPlan::new(poll, request, state.gate.now(), request_id.map(|r| r.0.0))
        .map_err(AppError::internal)?;
    start(state, plan).await
}

/// A job, to its owner only: anyone else gets 404, as for a job that does not exist.
async fn owned_job(state: &JobsState, user: UserId, raw_id: &str) -> ApiResult<Job> {
    let job = state
        .jobs
        .job(parse_id(raw_id)?)
        .await?
        .ok_or(AppError::NotFound)?;
    if job.owner_id != user {
        return Err(AppError::NotFound);
    }
    Ok(job)
}

/// A job's progress: poll it to drive a progress bar.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "getJob", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job, or another user's", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn read(
    State(state): State<JobsState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<JobView>> {
    let job = owned_job(&state, user, &id).await?;
    Ok(axum::Json(JobView::new(&job, state.gate.now())))
}

/// The job's file, for 24 hours after it finished: a redirect to a fresh presigned URL.
///
/// 302 to a freshly signed, short-lived S3 URL while the file is within its 24 hours; 410
/// after. The link is signed on every call because a URL signed inside Lambda dies with the
/// role's temporary credentials, long before 24 hours.
///
/// With `Accept: application/json` the same link answers 200 `{url, expires_in}` instead of
/// the redirect: a page holding the token in memory fetches it, then navigates to the URL
/// (a cross-origin redirect it could not read otherwise).
#[utoipa::path(get, path = "/v1/jobs/{id}/download", operation_id = "downloadJobFile", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The job id")),
    responses(
        (status = 302, description = "To a presigned URL valid for 5 minutes", headers(("Location" = String, description = "The presigned URL"))),
        (status = 200, description = "With `Accept: application/json`: `{url, expires_in}`"),
        (status = 404, description = "No such job, or another user's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The job has not finished (`job-not-ready`), or failed and has no file (`job-failed`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 410, description = "The file's 24 hours are over (`gone`)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn download(
    State(state): State<JobsState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let job = owned_job(&state, user, &id).await?;
    if let Some(reason) = job.error_at(state.gate.now()) {
        return Err(AppError::JobFailed(reason.to_owned()));
    }
    let (Some(key), Some(_)) = (&job.object_key, job.completed_at) else {
        return Err(AppError::JobNotReady);
    };
    if job.is_expired(state.gate.now()) {
        return Err(AppError::Gone);
    }
    let url = state
        .blobs
        .presign_get(key, std::time::Duration::from_secs(DOWNLOAD_LINK_SECONDS))
        .await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut response = if wants_json {
        axum::Json(serde_json::json!({ "url": url, "expires_in": DOWNLOAD_LINK_SECONDS }))
            .into_response()
    } else {
        let mut redirect = StatusCode::FOUND.into_response();
        redirect.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&url).map_err(AppError::internal)?,
        );
        redirect
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
