//! The jobs function: start render jobs (invite cards, share QR code, results chart), follow
//! their progress, and download their file for 24 hours. The work itself happens in the render
//! function; a request here does a fixed number of storage calls whatever the job's size.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiQuery, Caller, NoIdempotencyKey, page_limit, parse_id};
use super::gate::{Gate, gated};
use super::limits::Writer;
use super::openapi::{AuthErrors, BodyErrors, CommonErrors, OwnerErrors};
use super::views::{
    AddedGuestView, GuestCountsView, GuestPageView, GuestView, GuestsAddedView, JobView, ListView,
};
use super::{BodyLimit, RequestId};
use crate::domain::guest::GUESTS_PER_POLL_MAX;
use crate::domain::job::GUESTS_MAX;
use crate::domain::job::OVERDUE;
use crate::domain::{
    Card, FieldErrors, Guest, GuestId, GuestInput, InviteKey, Job, JobStatus, NewGuest, Poll,
    PollStatus, QrFormat, SheetPaper, Tally, UserId, Visibility,
};
use crate::error::ProblemDoc;
use crate::error::{ApiResult, AppError};
use crate::jobs::{JobPlan, JobRequest};
use crate::ports::{
    AddOutcome, BallotStore, BlobStore, GUESTS_PER_READ, GuestStore, GuestToAdd, GuestsAdded,
    JobCreated, JobCursor, JobStore, PollStore, RenderQueue,
};

/// How long a download link (a presigned S3 URL) is valid: minutes, because
/// `GET /v1/jobs/{id}/download` signs a fresh one on every use.
pub const DOWNLOAD_LINK_SECONDS: u64 = 300;

/// The largest guest list body accepted, in bytes.
pub const INVITES_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What the jobs function holds: polls and tallies (read only), the polls' guest lists, jobs,
/// the file store it signs downloads from, the render queue it starts work on, and the key
/// guests' tokens are derived from (to store their hashes; the tokens themselves are printed
/// by the render function, which holds the same key).
#[derive(Debug, Clone)]
pub struct JobsState {
    pub polls: Arc<dyn PollStore>,
    pub ballots: Arc<dyn BallotStore>,
    pub guests: Arc<dyn GuestStore>,
    pub invite_key: InviteKey,
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
    /// The state over one store that keeps polls, tallies, guests and jobs.
    #[allow(clippy::too_many_arguments)]
    pub fn new<S: PollStore + BallotStore + GuestStore + JobStore + 'static>(
        store: Arc<S>,
        invite_key: InviteKey,
        blobs: Arc<dyn BlobStore>,
        queue: Arc<dyn RenderQueue>,
        gate: Gate,
        guests_per_day: u64,
        jobs_in_flight: u32,
    ) -> Self {
        Self {
            polls: store.clone(),
            ballots: store.clone(),
            guests: store.clone(),
            invite_key,
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
                .routes(routes!(add_guests))
                .layer(axum::extract::DefaultBodyLimit::max(INVITES_BODY_LIMIT))
                .layer(axum::Extension(BodyLimit(INVITES_BODY_LIMIT))),
        )
        .routes(routes!(list_guests))
        .routes(routes!(revoke_guest))
        .routes(routes!(reissue_guest))
        .routes(routes!(guest_cards))
        .routes(routes!(share_qr))
        .routes(routes!(results_chart))
        .routes(routes!(read))
        .routes(routes!(download))
        .routes(routes!(poll_jobs))
        .with_state(state)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    /// 1 to 10,000 guests.
    #[schema(min_items = 1, max_items = 10000, example = json!([{"name": "Ann"}, {"name": "Bo", "email": "bo@example.com"}]))]
    guests: Vec<GuestEntry>,
    /// What the job makes: `zip` (the default: 300 DPI PNG cards and `manifest.csv`) or
    /// `pdf` (print-ready sheets: nine 2 × 3.5 in cards a page with cut marks, text as real
    /// text, QR codes as vectors).
    #[serde(default)]
    #[schema(value_type = Option<CardFormatName>)]
    format: Option<String>,
    /// The sheets' paper, for `pdf` only (default `a4`).
    #[serde(default)]
    #[schema(value_type = Option<SheetPaper>)]
    paper: Option<String>,
}

/// The formats of a cards job, for the document (the bodies keep strings so that any other
/// value gets a 422 naming the field).
#[derive(utoipa::ToSchema)]
#[schema(as = CardFormat)]
#[allow(dead_code)]
enum CardFormatName {
    #[schema(rename = "zip")]
    Zip,
    #[schema(rename = "pdf")]
    Pdf,
}

/// The paper of the print sheets a cards job asks for (`format`, `paper`), or `None` for the
/// ZIP of PNGs. `paper` without `pdf` is refused rather than ignored: the client expects
/// sheets it would not get.
fn sheets_asked(
    format: Option<&str>,
    paper: Option<&str>,
) -> Result<Option<SheetPaper>, FieldErrors> {
    let mut errors = FieldErrors::new();
    let pdf = match format {
        None | Some("zip") => false,
        Some("pdf") => true,
        Some(_) => {
            errors.add("format", "must be `zip` or `pdf`");
            false
        }
    };
    let sheet = match paper {
        None | Some("a4") => SheetPaper::A4,
        Some("letter") => SheetPaper::Letter,
        Some(_) => {
            errors.add("paper", "must be `a4` or `letter`");
            SheetPaper::A4
        }
    };
    if paper.is_some() && !pdf && errors.is_empty() {
        errors.add("paper", "applies to `\"format\": \"pdf\"` only");
    }
    errors.into_result()?;
    Ok(pdf.then_some(sheet))
}

/// A guest to invite.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GuestInput)]
struct GuestEntry {
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
    /// The organiser's own id for the guest (a row of their list): a guest with the same
    /// `ref` is the same guest whatever their name. Without it, the same name (case and
    /// spacing aside) and email are the same guest.
    #[serde(default, rename = "ref")]
    #[schema(min_length = 1, max_length = 100)]
    reference: Option<String>,
}

impl From<GuestEntry> for GuestInput {
    fn from(g: GuestEntry) -> Self {
        Self {
            name: g.name,
            email: g.email,
            reference: g.reference,
        }
    }
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

/// Invites guests: adds the ones not on the poll's guest list yet, then renders a card for
/// every guest named (a guest already on the list gets a card of their live invite, the one
/// they may hold already), then one ZIP of all cards.
///
/// The guest-list way in (`POST /v1/polls/{id}/guests`, then `POST /v1/polls/{id}/cards`) does
/// the same in two steps; this route stays for the clients of the first version of the API.
#[utoipa::path(post, path = "/v1/polls/{id}/invites", operation_id = "createInviteJob", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")), request_body = InviteBody,
    responses((status = 202, description = "The job (the same one for the same request within 24 hours, unless it failed)", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 409, description = "The poll is closed (`poll-closed`), or its guest list would go over its cap (`guest-list-full`)", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, BodyErrors, CommonErrors))]
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
    let sheets = sheets_asked(body.format.as_deref(), body.paper.as_deref())?;
    let poll = owned_poll(&state, user, &id).await?;
    still_open(&state, &poll)?;
    let guests = NewGuest::parse_all(poll.id, body.guests.into_iter().map(Into::into).collect())?;
    let added = add_to_list(&state, &poll, &guests).await?;
    // The new guests' cards are generation 0; the others' are read from the list.
    let fresh: std::collections::HashSet<&GuestId> = added.added.iter().collect();
    let known: std::collections::HashMap<GuestId, Guest> = state
        .guests
        .guests(poll.id, &added.existing)
        .await?
        .into_iter()
        .map(|g| (g.id.clone(), g))
        .collect();
    let cards: Vec<Card> = guests
        .iter()
        .filter_map(|g| match known.get(&g.id) {
            Some(listed) => Some(listed.card()),
            None => fresh.contains(&g.id).then(|| Card {
                guest: g.id.clone(),
                generation: 0,
                name: g.name.clone(),
                email: g.email.clone(),
            }),
        })
        .collect();
    cards_job(&state, &poll, &cards, sheets, request_id).await
}

/// Refuses new guests and new cards on a closed poll: their cards could never vote.
fn still_open(state: &JobsState, poll: &Poll) -> ApiResult<()> {
    if poll.status_at(state.gate.now()) == PollStatus::Closed {
        return Err(AppError::PollClosed);
    }
    Ok(())
}

/// Puts `guests` on the poll's list with their first invites (the token hashes computed here,
/// under the invite key): one transaction per 49 guests.
async fn add_to_list(
    state: &JobsState,
    poll: &Poll,
    guests: &[NewGuest],
) -> ApiResult<GuestsAdded> {
    let to_add: Vec<GuestToAdd> = guests
        .iter()
        .map(|g| GuestToAdd {
            invite: state.invite_key.token(poll.id, &g.id, 0).hash(),
            guest: g.clone(),
        })
        .collect();
    match state
        .guests
        .add_guests(poll.id, &to_add, state.gate.now(), GUESTS_PER_POLL_MAX)
        .await?
    {
        AddOutcome::Done(added) => Ok(added),
        AddOutcome::OverCap { .. } => Err(AppError::GuestListFull {
            cap: GUESTS_PER_POLL_MAX,
        }),
    }
}

/// Starts the job rendering `cards`, in the order given, as a ZIP of PNGs or, with `sheets`,
/// as a PDF of print sheets on that paper.
async fn cards_job(
    state: &JobsState,
    poll: &Poll,
    cards: &[Card],
    sheets: Option<SheetPaper>,
    request_id: Option<axum::Extension<RequestId>>,
) -> ApiResult<Response> {
    let request = match sheets {
        Some(paper) => JobRequest::Sheets(cards, paper),
        None => JobRequest::Invites(cards),
    };
    let plan = JobPlan::new(poll, request, state.gate.now(), request_id.map(|r| r.0.0))
        .map_err(AppError::internal)?;
    start(state, plan).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GuestsBody {
    /// 1 to 10,000 guests; a poll has at most 50,000.
    #[schema(min_items = 1, max_items = 10000, example = json!([{"name": "Ann", "ref": "row-1"}, {"name": "Bo", "email": "bo@example.com"}]))]
    guests: Vec<GuestEntry>,
}

/// Adds guests to the poll's list, each with one invite. A guest already on the list (the same
/// `ref`, or without one the same name and email) is not added again; the answer says which
/// guests were added and which were there.
#[utoipa::path(post, path = "/v1/polls/{id}/guests", operation_id = "addGuests", tag = "guests", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")), request_body = GuestsBody,
    responses((status = 200, description = "Each guest given, added or already there", body = GuestsAddedView),
        (status = 409, description = "The poll is closed (`poll-closed`), or the list would go over 50,000 guests (`guest-list-full`; the guests before the overflow are added)", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, BodyErrors, CommonErrors))]
async fn add_guests(
    State(state): State<JobsState>,
    Writer(user): Writer,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GuestsBody>,
) -> ApiResult<Response> {
    let poll = owned_poll(&state, user, &id).await?;
    still_open(&state, &poll)?;
    let guests = NewGuest::parse_all(poll.id, body.guests.into_iter().map(Into::into).collect())?;
    let added = add_to_list(&state, &poll, &guests).await?;
    let fresh: std::collections::HashSet<&GuestId> = added.added.iter().collect();
    let view = GuestsAddedView {
        added: added.added.len(),
        existing: added.existing.len(),
        guests: guests
            .iter()
            .map(|g| AddedGuestView {
                id: g.id.to_string(),
                name: g.name.clone(),
                added: fresh.contains(&g.id),
            })
            .collect(),
    };
    Ok(axum::Json(view).into_response())
}

/// The guest list's page size, by default and at most (one status read covers a page).
const GUEST_PAGE_DEFAULT: u16 = 50;
const GUEST_PAGE_MAX: u16 = 99;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct GuestListQuery {
    /// Guests per page, 1 to 99 (default 50).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 99)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of the poll's guests with each one's status, and the counts of the whole list:
/// three storage reads, whatever the list's size.
#[utoipa::path(get, path = "/v1/polls/{id}/guests", operation_id = "listGuests", tag = "guests", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"), GuestListQuery),
    responses((status = 200, description = "A page of guests", body = GuestPageView),
        (status = 400, description = "A bad `limit` or `cursor`", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, CommonErrors))]
async fn list_guests(
    State(state): State<JobsState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<GuestListQuery>,
) -> ApiResult<Response> {
    let limit = page_limit(query.limit.as_deref(), GUEST_PAGE_DEFAULT, GUEST_PAGE_MAX)?;
    let cursor =
        match query.cursor.as_deref() {
            None => None,
            Some(raw) => Some(GuestId::parse(raw).ok_or_else(|| {
                AppError::BadParameter("cursor is not one this API returned".into())
            })?),
        };
    let (poll, tally) = match state.ballots.poll_with_tally(parse_id(&id)?).await? {
        Some((poll, tally)) => (Some(poll), tally),
        None => (None, Tally::default()),
    };
    let poll = owned(poll, user)?;
    let (page, next) = state
        .guests
        .guests_page(poll.id, cursor.as_ref(), limit.min(GUESTS_PER_READ as u16))
        .await?;
    let ids: Vec<GuestId> = page.iter().map(|g| g.id.clone()).collect();
    let (counts, voted) = state.guests.guest_status(poll.id, &ids).await?;
    let view = GuestPageView {
        guests: page
            .iter()
            .map(|g| GuestView::new(g, voted.contains(&g.id)))
            .collect(),
        counts: GuestCountsView {
            invited: counts.guests,
            opened: counts.opened,
            // Guests' ballots, counted apart by the count function; for an invite-only poll
            // whose tally predates that, every ballot is a guest's (or an invite's from
            // before guest lists).
            voted: tally
                .guest_ballots
                .or((poll.visibility == Visibility::Invite).then_some(tally.ballots)),
        },
        next_cursor: next.map(|g| g.to_string()),
    };
    let mut response = axum::Json(view).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The guest `raw` of the owner's poll `id`: 404 for a guest of another poll.
async fn owned_guest(
    state: &JobsState,
    user: UserId,
    id: &str,
    raw: &str,
) -> ApiResult<(Poll, Guest)> {
    let poll = owned_poll(state, user, id).await?;
    let guest_id = GuestId::parse(raw).ok_or(AppError::NotFound)?;
    let guest = state
        .guests
        .guests(poll.id, std::slice::from_ref(&guest_id))
        .await?
        .pop()
        .ok_or(AppError::NotFound)?;
    Ok((poll, guest))
}

/// Revokes the guest's card at once: its token answers 410 `invite-revoked` from then on. A
/// ballot the guest cast already stays counted and theirs.
#[utoipa::path(post, path = "/v1/polls/{id}/guests/{guest}/revoke", operation_id = "revokeGuest", tag = "guests", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"), ("guest" = String, Path, description = "The guest id")),
    responses((status = 200, description = "The guest, revoked", body = GuestView),
        (status = 403, description = "The caller may see the poll but does not own it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll or guest", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The guest changed meanwhile (`conflict`): read the list again", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn revoke_guest(
    State(state): State<JobsState>,
    Writer(user): Writer,
    Path((id, guest)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (poll, mut guest) = owned_guest(&state, user, &id, &guest).await?;
    if !guest.revoked {
        let live = state
            .invite_key
            .token(poll.id, &guest.id, guest.generation)
            .hash();
        if !state.guests.revoke(&guest, &live, None).await? {
            return Err(AppError::Conflict);
        }
        guest.revoked = true;
    }
    guest_answer(&state, &poll, &guest).await
}

/// Revokes the guest's card and issues them a new one (the next generation): render it with
/// `POST /v1/polls/{id}/cards`. A guest who voted keeps their one ballot; the new card cannot
/// cast a second.
#[utoipa::path(post, path = "/v1/polls/{id}/guests/{guest}/reissue", operation_id = "reissueGuest", tag = "guests", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"), ("guest" = String, Path, description = "The guest id")),
    responses((status = 200, description = "The guest, with their new generation", body = GuestView),
        (status = 403, description = "The caller may see the poll but does not own it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll or guest", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The poll is closed (`poll-closed`), or the guest changed meanwhile (`conflict`)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn reissue_guest(
    State(state): State<JobsState>,
    Writer(user): Writer,
    Path((id, guest)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (poll, mut guest) = owned_guest(&state, user, &id, &guest).await?;
    still_open(&state, &poll)?;
    let key = &state.invite_key;
    let live = key.token(poll.id, &guest.id, guest.generation).hash();
    let next = key.token(poll.id, &guest.id, guest.generation + 1).hash();
    if !state.guests.revoke(&guest, &live, Some(&next)).await? {
        return Err(AppError::Conflict);
    }
    guest.generation += 1;
    guest.revoked = false;
    guest_answer(&state, &poll, &guest).await
}

/// One guest's view, with whether they voted (one read).
async fn guest_answer(state: &JobsState, poll: &Poll, guest: &Guest) -> ApiResult<Response> {
    let (_, voted) = state
        .guests
        .guest_status(poll.id, std::slice::from_ref(&guest.id))
        .await?;
    Ok(axum::Json(GuestView::new(guest, voted.contains(&guest.id))).into_response())
}

/// Which guests a card job renders.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum CardGuests {
    /// `"all"` (every guest not revoked) or `"new"` (those added since the last job for
    /// `all` or `new`).
    Which(String),
    /// The ids of the guests (1 to 10,000).
    Ids(Vec<String>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CardsBody {
    #[schema(example = json!("new"))]
    guests: CardGuests,
    /// What the job makes: `zip` (the default: 300 DPI PNG cards and `manifest.csv`) or
    /// `pdf` (print-ready sheets: nine 2 × 3.5 in cards a page with cut marks, text as real
    /// text, QR codes as vectors).
    #[serde(default)]
    #[schema(value_type = Option<CardFormatName>)]
    format: Option<String>,
    /// The sheets' paper, for `pdf` only (default `a4`).
    #[serde(default)]
    #[schema(value_type = Option<SheetPaper>)]
    paper: Option<String>,
}

/// Renders cards for guests of the list: each card carries the guest's live invite, so the
/// same guests give the same cards in any job (a lost ZIP can be made again at any time)
/// unless a guest was reissued. Revoked guests get no card.
#[utoipa::path(post, path = "/v1/polls/{id}/cards", operation_id = "createCardsJob", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")), request_body = CardsBody,
    responses((status = 202, description = "The job (the same one for the same cards within 24 hours, unless it failed)", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 409, description = "The poll is closed (`poll-closed`)", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, BodyErrors, CommonErrors))]
async fn guest_cards(
    State(state): State<JobsState>,
    _: NoIdempotencyKey,
    Writer(user): Writer,
    Path(id): Path<String>,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<CardsBody>,
) -> ApiResult<Response> {
    let sheets = sheets_asked(body.format.as_deref(), body.paper.as_deref())?;
    let poll = owned_poll(&state, user, &id).await?;
    still_open(&state, &poll)?;
    let now = state.gate.now();
    let (mut guests, mark) = match body.guests {
        CardGuests::Which(which) if which == "all" => {
            (state.guests.all_guests(poll.id).await?, true)
        }
        CardGuests::Which(which) if which == "new" => {
            let (counts, _) = state.guests.guest_status(poll.id, &[]).await?;
            let since = counts.last_cards_at;
            let all = state.guests.all_guests(poll.id).await?;
            let new = all
                .into_iter()
                .filter(|g| since.is_none_or(|t| g.added_at > t))
                .collect();
            (new, true)
        }
        CardGuests::Which(_) => {
            return Err(FieldErrors::single(
                "guests",
                "must be \"all\", \"new\" or a list of guest ids",
            )
            .into());
        }
        CardGuests::Ids(ids) => {
            if ids.is_empty() || ids.len() > GUESTS_MAX {
                return Err(FieldErrors::single(
                    "guests",
                    format!("must name 1 to {GUESTS_MAX} guests"),
                )
                .into());
            }
            let mut parsed = Vec::with_capacity(ids.len());
            let mut errors = FieldErrors::new();
            for (i, raw) in ids.iter().enumerate() {
                match GuestId::parse(raw) {
                    Some(id) if !parsed.contains(&id) => parsed.push(id),
                    Some(_) => {}
                    None => errors.add(format!("guests[{i}]"), "is not a guest id"),
                }
            }
            errors.into_result()?;
            let found = state.guests.guests(poll.id, &parsed).await?;
            if found.len() < parsed.len() {
                let known: std::collections::HashSet<&GuestId> =
                    found.iter().map(|g| &g.id).collect();
                let mut errors = FieldErrors::new();
                for (i, id) in parsed.iter().enumerate() {
                    if !known.contains(id) {
                        errors.add(format!("guests[{i}]"), "is not a guest of this poll");
                    }
                }
                return Err(errors.into());
            }
            (found, false)
        }
    };
    guests.retain(|g| !g.revoked);
    // In the order they were added, so a list's cards come out as it was typed.
    guests.sort_by(|a, b| (a.added_at, &a.name, &a.id).cmp(&(b.added_at, &b.name, &b.id)));
    if guests.is_empty() {
        return Err(FieldErrors::single("guests", "names no guest to render a card for").into());
    }
    if guests.len() > GUESTS_MAX {
        return Err(FieldErrors::single(
            "guests",
            format!(
                "names {} guests; a job renders at most {GUESTS_MAX}: name them by id",
                guests.len()
            ),
        )
        .into());
    }
    let cards: Vec<Card> = guests.iter().map(Guest::card).collect();
    let response = cards_job(&state, &poll, &cards, sheets, request_id).await?;
    if mark {
        state.guests.mark_cards(poll.id, now).await?;
    }
    Ok(response)
}

/// The poll's share QR code, as PNG or SVG.
#[utoipa::path(post, path = "/v1/polls/{id}/qr", operation_id = "createQrJob", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")), request_body = QrBody,
    responses((status = 202, description = "The job (the same one for the same request within 24 hours, unless it failed)", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        OwnerErrors, AuthErrors, BodyErrors, CommonErrors))]
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
        OwnerErrors, AuthErrors, CommonErrors))]
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

/// Jobs per page of a poll's job list, by default and at most.
const JOB_PAGE_DEFAULT: u16 = 20;
const JOB_PAGE_MAX: u16 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct JobListQuery {
    /// Jobs per page, 1 to 100 (default 20).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page, as given (any other value gets 400).
    cursor: Option<String>,
}

/// The poll's jobs (invite cards, QR codes, charts), newest first, with their downloads: two
/// storage reads (the poll, one page of its jobs), whatever the number of jobs. A job started
/// a moment ago may be missing from the list for that moment (the index is eventually
/// consistent); `GET /v1/jobs/{id}` always has it.
#[utoipa::path(get, path = "/v1/polls/{id}/jobs", operation_id = "listPollJobs", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"), JobListQuery),
    responses((status = 200, description = "A page of the poll's jobs, newest first", body = ListView<JobView>),
        (status = 400, description = "A bad `limit` or `cursor`", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, CommonErrors))]
async fn poll_jobs(
    State(state): State<JobsState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<JobListQuery>,
) -> ApiResult<Response> {
    let limit = page_limit(query.limit.as_deref(), JOB_PAGE_DEFAULT, JOB_PAGE_MAX)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|raw| {
            URL_SAFE_NO_PAD
                .decode(raw)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<JobCursor>(&bytes).ok())
                .ok_or_else(|| AppError::BadParameter("cursor is not one this API returned".into()))
        })
        .transpose()?;
    let poll = owned_poll(&state, user, &id).await?;
    let (jobs, next) = state
        .jobs
        .jobs_of_poll(poll.id, limit, cursor.as_ref())
        .await?;
    let now = state.gate.now();
    let view = ListView {
        // Only the poll's owner starts its jobs, but the list is filtered by owner too, so
        // that it never shows what `GET /v1/jobs/{id}` would refuse.
        items: jobs
            .iter()
            .filter(|j| j.owner_id == user)
            .map(|j| JobView::new(j, now))
            .collect(),
        next_cursor: next
            .map(|c| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default())),
    };
    let mut response = axum::Json(view).into_response();
    // Progress and downloads change while a job runs: no cache may keep the list.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
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
