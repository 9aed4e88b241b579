//! Representations: the JSON the API sends. Field names are part of the public contract.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::{
    Ballot, OptionId, Poll, PollOption, PollStatus, ResultsVisibility, Tally, User, UserId,
    Visibility,
};

/// A JSON response that no cache may keep: anything keyed by a credential (tokens, the
/// caller's account, an invite), which a shared cache must never hand to someone else.
pub fn no_store<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.to_string(),
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokensView {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PollView {
    pub id: String,
    /// Shown to the owner only: to anyone else a user id is a handle to nothing but the
    /// owner's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    pub question: String,
    /// The organiser's event name, printed on the poll's invite cards; null when not set.
    pub event_name: Option<String>,
    pub options: Vec<PollOption>,
    pub status: PollStatus,
    pub visibility: Visibility,
    pub results: ResultsVisibility,
    pub max_choices: u8,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closes_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl PollView {
    /// The poll as `viewer` (`None` for a guest) sees it at `now` (a poll past its deadline
    /// reads as closed).
    pub fn new(poll: &Poll, viewer: Option<UserId>, now: OffsetDateTime) -> Self {
        Self {
            id: poll.id.to_string(),
            owner_id: viewer
                .filter(|v| poll.is_owned_by(*v))
                .map(|_| poll.owner_id.to_string()),
            question: poll.question.clone(),
            event_name: poll.event_name.clone(),
            options: poll.options.clone(),
            status: poll.status_at(now),
            visibility: poll.visibility,
            results: poll.results,
            max_choices: poll.max_choices,
            closes_at: poll.closes_at,
            created_at: poll.created_at,
            updated_at: poll.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BallotView {
    pub poll_id: String,
    pub choices: Vec<OptionId>,
    #[serde(with = "time::serde::rfc3339")]
    pub voted_at: OffsetDateTime,
}

impl From<&Ballot> for BallotView {
    fn from(ballot: &Ballot) -> Self {
        Self {
            poll_id: ballot.poll_id.to_string(),
            choices: ballot.choices.clone(),
            voted_at: ballot.voted_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OptionResult {
    pub id: OptionId,
    pub text: String,
    pub votes: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultsView {
    pub poll_id: String,
    pub status: PollStatus,
    pub total: u64,
    pub options: Vec<OptionResult>,
    /// When these results were read.
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
    /// The `voted_at` of the newest ballot counted (null before the first): ballots cast up to
    /// about then are in the counts. Counting follows the ballots by about a second.
    #[serde(with = "time::serde::rfc3339::option")]
    pub counted_through: Option<OffsetDateTime>,
    /// When counting last added to these counts (null before the first ballot is counted).
    #[serde(with = "time::serde::rfc3339::option")]
    pub counted_at: Option<OffsetDateTime>,
}

impl ResultsView {
    pub fn new(poll: &Poll, tally: &Tally, now: OffsetDateTime) -> Self {
        Self {
            poll_id: poll.id.to_string(),
            status: poll.status_at(now),
            total: tally.ballots,
            options: poll
                .options
                .iter()
                .map(|o| OptionResult {
                    id: o.id.clone(),
                    text: o.text.clone(),
                    votes: tally.per_option.get(&o.id).copied().unwrap_or(0),
                })
                .collect(),
            as_of: now,
            counted_through: tally.counted_through,
            counted_at: tally.counted_at,
        }
    }
}

/// A pass to a poll's live results (`POST /v1/polls/{id}/live`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveView {
    /// The channel to subscribe to: `/results/<poll>`.
    pub channel: String,
    /// The authorization for connecting and subscribing (the `Authorization` field).
    pub pass: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The WebSocket to open.
    pub realtime_url: String,
    /// The `host` field of the authorization.
    pub host: String,
    /// The WebSocket subprotocol: `aws-appsync-event-ws`.
    pub protocol: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: crate::domain::JobKind,
    pub poll_id: String,
    pub status: crate::domain::JobStatus,
    /// `rendering` (making the files), `bundling` (an invites job's ZIP), then `done`; a
    /// failed job keeps the stage it reached.
    pub stage: crate::domain::JobStage,
    /// The media type of the file the job makes: `application/zip` (invite cards as PNGs),
    /// `application/pdf` (print sheets), `image/png` or `image/svg+xml` (a QR code, a chart).
    pub media_type: &'static str,
    /// Units of work: guests, or 1 for a QR code or chart.
    pub total: u32,
    /// Units rendered.
    pub done: u32,
    pub failed: u32,
    /// Files bundled into the ZIP so far, of `bundle_total`.
    pub bundled: u32,
    /// Files the bundling stage puts into the ZIP: the cards made (0 for a QR code or chart).
    pub bundle_total: u32,
    /// The whole job, 0.0 to 1.0: rendering fills the first three quarters of an invites
    /// job and bundling the rest; only grows, and reaches 1.0 when the file is ready.
    pub progress: f64,
    /// The stable link that redirects to the file (signed afresh on each use).
    pub download_url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl JobView {
    pub fn new(job: &crate::domain::Job, now: OffsetDateTime) -> Self {
        let downloadable = job.completed_at.is_some() && !job.is_expired(now);
        Self {
            id: job.id.to_string(),
            kind: job.kind,
            poll_id: job.poll_id.to_string(),
            status: job.status_at(now),
            stage: job.stage(),
            media_type: crate::objects::ObjectKey::file_of(job).content_type(),
            total: job.total,
            done: job.done.min(job.total),
            failed: job.failed.min(job.total),
            // The builder's last count may lag its completion by a few files.
            bundled: if job.completed_at.is_some() {
                job.bundle_total()
            } else {
                job.bundled.min(job.bundle_total())
            },
            bundle_total: job.bundle_total(),
            progress: job.progress(),
            download_url: downloadable.then(|| format!("/v1/jobs/{}/download", job.id)),
            expires_at: job.expires_at(),
            error: job.error_at(now).map(str::to_owned),
            created_at: job.created_at,
        }
    }
}

/// A guest's view of their invite.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InviteView {
    pub guest_name: String,
    pub poll: PollView,
    /// Whether the invite has cast its ballot.
    pub used: bool,
    pub ballot: Option<BallotView>,
}

impl InviteView {
    pub fn new(
        invite: &crate::domain::Invite,
        poll: &Poll,
        ballot: Option<&Ballot>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            guest_name: invite.guest_name.clone(),
            poll: PollView::new(poll, None, now),
            used: ballot.is_some(),
            ballot: ballot.map(BallotView::from),
        }
    }
}

/// A guest as the organiser's list shows them: who, and where their invite stands (never what
/// they voted).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuestView {
    /// Stable for the same guest of the same poll (derived from `ref`, else name and email).
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub status: crate::domain::GuestStatus,
    /// Which card is live: 0 at first, one more on each reissue.
    pub generation: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

impl GuestView {
    pub fn new(guest: &crate::domain::Guest, voted: bool) -> Self {
        Self {
            id: guest.id.to_string(),
            name: guest.name.clone(),
            email: guest.email.clone(),
            reference: guest.reference.clone(),
            status: guest.status(voted),
            generation: guest.generation,
            added_at: guest.added_at,
        }
    }
}

/// The whole list in numbers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuestCountsView {
    /// Guests on the list (revoked ones included).
    pub invited: u64,
    /// Guests who read their invite (page or API) at least once.
    pub opened: u64,
    /// Ballots cast in an invite-only poll, where every ballot is a guest's; `null` in a public
    /// poll, where signed-in users vote too (each guest's `status` still says who voted).
    pub voted: Option<u64>,
}

/// A page of the guest list with the list's counts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuestPageView {
    pub guests: Vec<GuestView>,
    pub counts: GuestCountsView,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// One guest of an adding request, in the order given (repeats merged).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddedGuestView {
    pub id: String,
    pub name: String,
    /// `true` when this request put the guest on the list, `false` when they were on it.
    pub added: bool,
}

/// What adding guests did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuestsAddedView {
    pub added: usize,
    pub existing: usize,
    pub guests: Vec<AddedGuestView>,
}
