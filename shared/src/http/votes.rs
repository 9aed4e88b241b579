//! The votes function: cast a ballot (one conditional put, exactly once per voter, checked
//! against the instance's cached poll), read results (the tally: one read).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cache::PollCache;
use super::extract::{ApiJson, IdempotencyKey, VoterCredential, is_token_shaped, parse_id};
use super::gate::{Gate, gated};
use super::limits::CountedVoter;
use super::openapi::{AuthErrors, BodyErrors, CommonErrors};
use super::views::{BallotView, InviteView, LiveView, ResultsView, no_store};
use crate::domain::{Ballot, InviteToken, Poll, PollId, PollStatus, Visibility, Voter};
use crate::error::ProblemDoc;
use crate::error::{ApiResult, AppError};
use crate::live::LiveKey;
use crate::ports::{BallotStore, CastOutcome, InviteStore, PollStore};

/// What the votes function holds: polls (read only, through the instance's cache), ballots,
/// guests' invites, and what it hands live watchers.
#[derive(Debug, Clone)]
pub struct VotesState {
    pub polls: PollCache,
    pub ballots: Arc<dyn BallotStore>,
    pub invites: Arc<dyn InviteStore>,
    pub live: LiveDesk,
    pub gate: Gate,
}

/// Where live results are watched and the key their passes are signed with.
#[derive(Debug, Clone)]
pub struct LiveDesk {
    pub key: LiveKey,
    /// `TALLY_LIVE_REALTIME_URL`.
    pub realtime_url: String,
    /// `TALLY_LIVE_HOST`.
    pub host: String,
}

impl LiveDesk {
    pub fn new(key: LiveKey, config: &crate::config::Config) -> Self {
        Self {
            key,
            realtime_url: config.live_realtime_url.clone(),
            host: config.live_host.clone(),
        }
    }
}
gated!(VotesState);

impl VotesState {
    /// The state over one store that keeps polls, ballots and invites, with a cache of its own.
    pub fn new<S: PollStore + BallotStore + InviteStore + 'static>(
        store: Arc<S>,
        live: LiveDesk,
        gate: Gate,
    ) -> Self {
        let polls = PollCache::new(store.clone(), gate.clock.clone());
        Self::with_polls(polls, store, live, gate)
    }

    /// The state over `polls`, a cache that another function's state may share (one process
    /// playing several functions sees the owner's writes in it at once).
    pub fn with_polls<S: BallotStore + InviteStore + 'static>(
        polls: PollCache,
        store: Arc<S>,
        live: LiveDesk,
        gate: Gate,
    ) -> Self {
        Self {
            polls,
            ballots: store.clone(),
            invites: store,
            live,
            gate,
        }
    }
}

pub fn routes(state: VotesState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(cast))
        .routes(routes!(results))
        .routes(routes!(live))
        .routes(routes!(invite))
        .with_state(state)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CastBody {
    /// Distinct option ids of the poll (`o1` …), at least one and at most the poll's
    /// `max_choices`.
    #[schema(min_items = 1, max_items = 20, example = json!(["o1"]))]
    choices: Vec<String>,
}

/// The poll, from the instance's cache. A missing poll is 404, except to a guest whose card
/// was for it: the poll was deleted, and their card says so (410), at the cost of one more
/// read on that path only.
async fn cached_poll(
    state: &VotesState,
    poll_id: PollId,
    credential: &VoterCredential,
) -> ApiResult<Poll> {
    if let Some(poll) = state.polls.cached(poll_id).await? {
        return Ok(poll);
    }
    if let VoterCredential::Invite(token) = credential
        && let Some(invite) = state.invites.invite(&token.hash()).await?
        && invite.poll_id == poll_id
    {
        return Err(AppError::PollDeleted);
    }
    Err(AppError::NotFound)
}

/// The voter behind a credential, in `poll`: a user may vote in public polls; an invite in its
/// own poll, whatever the poll's visibility (one read: the invite).
async fn voter_in(
    state: &VotesState,
    poll: &Poll,
    credential: VoterCredential,
) -> ApiResult<Voter> {
    match credential {
        VoterCredential::User(user) => {
            // An invite-only poll does not exist for anyone but its owner (and its guests,
            // who come with an invite): a 403 would confirm the id.
            if !poll.is_visible_to(user) {
                return Err(AppError::NotFound);
            }
            if poll.visibility == Visibility::Invite {
                return Err(AppError::Forbidden(
                    "This poll takes ballots by invite only.",
                ));
            }
            Ok(Voter::User(user))
        }
        VoterCredential::Invite(token) => {
            let hash = token.hash();
            match state.invites.invite(&hash).await? {
                Some(invite) if invite.poll_id == poll.id => {
                    if invite.revoked {
                        return Err(AppError::InviteRevoked);
                    }
                    Ok(invite.voter())
                }
                _ => Err(AppError::Forbidden(
                    "This invite is not valid for this poll.",
                )),
            }
        }
    }
}

// Casting costs one storage call on a warm instance: the conditional put of the ballot. A
// cold cache adds the poll read (once a second per poll), an invite adds its read, and the
// instance's first ballot on a poll adds the options lock.
/// Casts the caller's one ballot in a poll: a signed-in user in a public poll, or a guest with
/// the poll's invite. A retry with the same `Idempotency-Key` gets the first answer again.
/// Every ballot answered 201 is counted; results show it once counting catches up (about a
/// second), and say how far it has (`counted_through`). A ballot may be accepted up to a
/// second after the owner closes the poll (and is then counted), never later.
#[utoipa::path(post, path = "/v1/polls/{id}/votes", operation_id = "castVote", tag = "votes", security(("bearer" = []), ("invite" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    request_body = CastBody,
    responses(
        (status = 201, description = "The ballot (or, with the same Idempotency-Key, the first one again)", body = BallotView),
        (status = 403, description = "The poll takes ballots by invite only (said to its owner alone), or the invite is for another poll", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll, or an invite-only one and the caller is not its owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already voted (`already-voted`), the poll is closed (`poll-closed`), or its options changed meanwhile (`conflict`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 410, description = "The invite was revoked or replaced (`invite-revoked`), or the poll deleted (`poll-deleted`)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, BodyErrors, CommonErrors))]
async fn cast(
    State(state): State<VotesState>,
    CountedVoter(credential): CountedVoter,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<CastBody>,
) -> ApiResult<Response> {
    let poll = cached_poll(&state, parse_id(&id)?, &credential).await?;
    let voter = voter_in(&state, &poll, credential).await?;
    let choices = poll.parse_choices(&body.choices)?;
    let now = state.gate.now();
    let ballot = Ballot {
        poll_id: poll.id,
        voter,
        choices: choices.ids().to_vec(),
        voted_at: now,
        idempotency_key: key.clone(),
    };
    if poll.status_at(now) != PollStatus::Open {
        // A voter retrying a ballot that got in before the close gets it replayed.
        return match state.ballots.ballot(poll.id, &ballot.voter).await? {
            Some(first) => already_voted(&ballot, first),
            None => Err(AppError::PollClosed),
        };
    }
    if !state.polls.options_locked(poll.id, poll.options_rev) {
        if !state
            .ballots
            .lock_options(poll.id, poll.options_rev)
            .await?
        {
            // The options changed since the cached read: the choices named other options.
            state.polls.forget(poll.id);
            return Err(AppError::Conflict);
        }
        state.polls.mark_locked(poll.id, poll.options_rev);
    }
    match state.ballots.cast(&ballot).await? {
        CastOutcome::Recorded => Ok(ballot_created(&ballot, false)),
        CastOutcome::AlreadyVoted(first) => already_voted(&ballot, first),
    }
}

/// The answer to a second ballot of the same voter: the first one replayed when it carried
/// the same `Idempotency-Key` (and choices), else 409 `already-voted`.
fn already_voted(ours: &Ballot, first: Ballot) -> ApiResult<Response> {
    match (&ours.idempotency_key, &first.idempotency_key) {
        (Some(a), Some(b)) if a == b => {
            if first.choices == ours.choices {
                Ok(ballot_created(&first, true))
            } else {
                Err(AppError::IdempotencyKeyReused)
            }
        }
        _ => Err(AppError::AlreadyVoted),
    }
}

/// 201 with the ballot; a replay (same `Idempotency-Key`) says so in a header.
fn ballot_created(ballot: &Ballot, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, axum::Json(BallotView::from(ballot))).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

// One storage call: the tally (the poll comes from the instance's cache, read at most once a
// second); a guest's invite is read first (one more).
/// Counts per option, in one storage read, as far as counting has got: `counted_through` is
/// the time of the newest ballot counted and `counted_at` when counting last added to them
/// (counting follows the ballots by about a second). The `ETag` names the counts (not the time
/// of reading), so a client polling for changes sends `If-None-Match` and gets 304 until a
/// counted ballot or a change of the poll moves them. A guest reads them with their invite
/// (`Authorization: Invite <token>`) under the same `results` rule as users.
#[utoipa::path(get, path = "/v1/polls/{id}/results", operation_id = "getResults", tag = "votes", security(("bearer" = []), ("invite" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from a previous read: 304 while the results are unchanged")),
    responses(
        (status = 200, description = "The results", body = ResultsView,
            headers(("ETag" = String, description = "The results' version"))),
        (status = 304, description = "Unchanged since the ETag in `If-None-Match`",
            headers(("ETag" = String, description = "The results' version"))),
        (status = 403, description = "Results are shown after the poll closes, or the invite is for another poll", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll, or one hidden from the caller", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 410, description = "The invite was revoked or replaced (`invite-revoked`), or the poll deleted (`poll-deleted`)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn results(
    State(state): State<VotesState>,
    credential: VoterCredential,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let poll = results_poll(&state, &id, credential).await?;
    let now = state.gate.now();
    let tally = state.ballots.tally(poll.id).await?;
    let view = ResultsView::new(&poll, &tally, now);
    let etag = results_etag(poll.version, &view);
    let mut response = if none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        axum::Json(&view).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    // A shared cache must not hand one caller's results to another; a private one may keep
    // them but must ask again (cheaply, with the ETag) each time.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

/// The poll whose results the caller asks for, if the poll's `results` rule shows them to the
/// caller now: its owner always; others as the rule says (a guest with a live card of it).
async fn results_poll(
    state: &VotesState,
    id: &str,
    credential: VoterCredential,
) -> ApiResult<Poll> {
    let poll_id = parse_id(id)?;
    let poll = cached_poll(state, poll_id, &credential).await?;
    let user = match credential {
        VoterCredential::User(user) => Some(user),
        invite @ VoterCredential::Invite(_) => {
            // The same checks as the guest's ballot: their poll, a live card.
            voter_in(state, &poll, invite).await?;
            None
        }
    };
    let now = state.gate.now();
    let visible = match user {
        Some(user) => {
            if !poll.is_visible_to(user) {
                return Err(AppError::NotFound);
            }
            poll.results_visible_to(user, now)
        }
        None => poll.results_visible_to_guests(now),
    };
    if !visible {
        return Err(AppError::Forbidden(
            "The results of this poll are shown after it closes.",
        ));
    }
    Ok(poll)
}

// No storage call but a guest's invite: the poll comes from the instance's cache.
/// A pass to watch the poll's results live, for whoever may read them now (the same `results`
/// rule as `GET …/results`). Open `realtime_url` as a WebSocket with the subprotocols
/// `aws-appsync-event-ws` and `header-<base64url of {"host", "Authorization": pass}>`, then
/// subscribe to `channel` with the same authorization (the AppSync Events protocol; the dev
/// server speaks the same subset). Each event is a `LiveResults` as a JSON string; keep the one
/// with the largest `total`. The pass opens this poll's channel only, until `expires_at`; ask
/// for a new one to reconnect. Watchers of a poll whose results show after it closes get no
/// pass before the close (403), except its owner.
#[utoipa::path(post, path = "/v1/polls/{id}/live", operation_id = "watchResults", tag = "votes", security(("bearer" = []), ("invite" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id")),
    responses(
        (status = 200, description = "A pass to the poll's live results", body = LiveView),
        (status = 403, description = "Results are shown after the poll closes, or the invite is for another poll", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such poll, or one hidden from the caller", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 410, description = "The invite was revoked or replaced (`invite-revoked`), or the poll deleted (`poll-deleted`)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn live(
    State(state): State<VotesState>,
    credential: VoterCredential,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let poll = results_poll(&state, &id, credential).await?;
    let expires_at = state.gate.now() + crate::live::PASS_LIFETIME;
    let view = LiveView {
        channel: crate::live::channel(poll.id),
        pass: state.live.key.pass(poll.id, expires_at),
        expires_at,
        realtime_url: state.live.realtime_url.clone(),
        host: state.live.host.clone(),
        protocol: "aws-appsync-event-ws",
    };
    Ok(no_store(StatusCode::OK, &view))
}

/// The results' version: a hash of everything in them but the time of reading.
fn results_etag(poll_version: u64, view: &ResultsView) -> String {
    let counts: Vec<(&str, &str, u64)> = view
        .options
        .iter()
        .map(|o| (o.id.as_str(), o.text.as_str(), o.votes))
        .collect();
    let progress = view
        .counted_through
        .map(|t| t.unix_timestamp_nanos().to_string());
    let fingerprint = serde_json::json!([poll_version, view.status, view.total, counts, progress]);
    let digest = Sha256::digest(fingerprint.to_string().as_bytes());
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..12]))
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 requires for it) or is
/// `*`.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// What a guest needs to vote: the poll, their name, and whether (and how) the invite was
/// used. The token is the credential; an unknown one is 404, a revoked (or reissued) one 410
/// `invite-revoked`, and one whose poll was deleted 410 `poll-deleted`.
// Two storage reads, and on a card's first read one transaction recording that the guest
// opened it (the organiser's list shows it).
#[utoipa::path(get, path = "/v1/invites/{token}", operation_id = "getInvite", tag = "votes",
    params(("token" = String, Path, description = "The invite token from the guest's card")),
    responses(
        (status = 200, description = "The invite", body = InviteView),
        (status = 404, description = "No such invite", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 410, description = "The card was revoked or replaced (`invite-revoked`), or its poll deleted (`poll-deleted`)", body = ProblemDoc, content_type = "application/problem+json"),
        CommonErrors))]
async fn invite(State(state): State<VotesState>, Path(token): Path<String>) -> ApiResult<Response> {
    if !is_token_shaped(&token) {
        return Err(AppError::NotFound);
    }
    let hash = InviteToken::new(token).hash();
    let invite = state
        .invites
        .invite(&hash)
        .await?
        .ok_or(AppError::NotFound)?;
    if invite.revoked {
        return Err(AppError::InviteRevoked);
    }
    let (poll, ballot) = state
        .invites
        .poll_and_ballot(invite.poll_id, &invite.voter())
        .await?;
    let poll = poll.ok_or(AppError::PollDeleted)?;
    let now = state.gate.now();
    if !invite.opened {
        state.invites.mark_opened(&invite, now).await?;
    }
    // The token in the path is the credential: no cache may keep the answer.
    Ok(no_store(
        StatusCode::OK,
        &InviteView::new(&invite, &poll, ballot.as_ref(), now),
    ))
}
