//! The polls function: create, read, list mine, patch, delete, close. Only the owner writes;
//! another user gets 403 on a poll it can see and 404 on one it cannot.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::RequestId;
use super::extract::{ApiJson, ApiQuery, Caller, IdempotencyKey, IfMatch, page_limit, parse_id};
use super::gate::{Gate, gated};
use super::limits::Writer;
use super::openapi::{AuthErrors, BodyErrors, CommonErrors, OwnerErrors};
use super::views::{ListView, PollView};
use crate::domain::{
    FieldErrors, NewPoll, Poll, PollId, PollPatch, PollStatus, ResultsVisibility, UserId,
    Visibility, parse_event_name,
};
use crate::error::ProblemDoc;
use crate::error::{ApiResult, AppError};
use crate::ports::{
    CreateRequest, PollCreated, PollCursor, PollStore, PurgeMessage, RenderQueue, StoreError,
};

pub const PAGE_DEFAULT: u16 = 20;
pub const PAGE_MAX: u16 = 100;

/// What the polls function holds: the polls, and the render queue, where a deletion sends
/// the removal of the poll's guests, cards and ballots; nothing of ballots, users or files.
#[derive(Debug, Clone)]
pub struct PollsState {
    pub polls: Arc<dyn PollStore>,
    pub queue: Arc<dyn RenderQueue>,
    pub gate: Gate,
}
gated!(PollsState);

pub fn routes(state: PollsState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, patch, delete))
        .routes(routes!(close))
        .with_state(state)
}

/// Serialize gives the request's fingerprint for `Idempotency-Key`: the same fields in any
/// order and spacing are the same request.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"question": "Where shall we eat?", "options": ["Pizza", "Sushi", "Tacos"], "max_choices": 1}))]
struct CreatePoll {
    /// Up to 300 characters once surrounding spaces are trimmed; not blank.
    #[schema(
        max_length = 300,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        example = "Where shall we eat?"
    )]
    question: String,
    /// The organiser's event name, printed above the question on the poll's invite cards:
    /// up to 100 characters once trimmed (a card shows about 40 and cuts the rest with an
    /// ellipsis); absent, null or blank for none.
    #[serde(default)]
    #[schema(max_length = 100, example = "Acme summer offsite")]
    event_name: Option<String>,
    /// 2 to 20 options, each 1 to 120 characters once trimmed, distinct ignoring case and
    /// surrounding spaces.
    #[schema(min_items = 2, max_items = 20)]
    options: Vec<OptionInput>,
    /// An RFC 3339 time in the future (JSON Schema cannot say "future": a past one gets 422);
    /// absent or null for no deadline.
    #[serde(default)]
    #[schema(format = DateTime, example = "2030-01-31T18:00:00Z")]
    closes_at: Option<String>,
    /// Who may vote (default `public`).
    #[serde(default)]
    #[schema(value_type = Option<Visibility>)]
    visibility: Option<String>,
    /// When non-owners see the results (default `always`).
    #[serde(default)]
    #[schema(value_type = Option<ResultsVisibility>)]
    results: Option<String>,
    /// How many options a ballot may choose (default 1); at most the number of options.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 20)]
    max_choices: Option<u32>,
}

/// An option as a client may send it: plain text, or `{text}` as the API shows it.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum OptionInput {
    Text(String),
    Object {
        #[schema(
            min_length = 1,
            max_length = 120,
            pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
        )]
        text: String,
    },
}

impl OptionInput {
    fn into_text(self) -> String {
        match self {
            Self::Text(text) | Self::Object { text } => text,
        }
    }
}

/// Parses the enum and time fields, recording failures per field.
fn parse_timestamp(errors: &mut FieldErrors, raw: Option<String>) -> Option<OffsetDateTime> {
    let raw = raw?;
    errors.check(
        "closes_at",
        OffsetDateTime::parse(&raw, &Rfc3339)
            .map_err(|_| "must be an RFC 3339 timestamp such as 2030-01-31T18:00:00Z"),
    )
}

fn parse_visibility(errors: &mut FieldErrors, raw: Option<String>) -> Option<Visibility> {
    match raw.as_deref()? {
        "public" => Some(Visibility::Public),
        "invite" => Some(Visibility::Invite),
        _ => {
            errors.add("visibility", "must be `public` or `invite`");
            None
        }
    }
}

fn parse_results(errors: &mut FieldErrors, raw: Option<String>) -> Option<ResultsVisibility> {
    match raw.as_deref()? {
        "always" => Some(ResultsVisibility::Always),
        "after_close" => Some(ResultsVisibility::AfterClose),
        _ => {
            errors.add("results", "must be `always` or `after_close`");
            None
        }
    }
}

fn poll_response(status: StatusCode, poll: &Poll, viewer: UserId, now: OffsetDateTime) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&poll.etag()) {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/v1/polls/{}", poll.id))
    {
        headers.insert(header::LOCATION, location);
    }
    (
        status,
        headers,
        axum::Json(PollView::new(poll, Some(viewer), now)),
    )
        .into_response()
}

/// How long a retry with the same `Idempotency-Key` finds the poll the first request made.
const IDEMPOTENCY_WINDOW: time::Duration = time::Duration::hours(24);

/// Creates a poll owned by the caller. A retry with the same `Idempotency-Key` within 24 hours
/// gets the same poll again instead of a second one (the same key with another body is 422).
#[utoipa::path(post, path = "/v1/polls", operation_id = "createPoll", tag = "polls", security(("bearer" = [])), request_body = CreatePoll,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    responses(
        (status = 201, description = "The poll (or, with the same Idempotency-Key, the one the first request made)", body = PollView,
            headers(("Location" = String, description = "The poll's URL"), ("ETag" = String, description = "The poll's version"))),
        (status = 409, description = "The poll this Idempotency-Key made was deleted since (`conflict`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "This Idempotency-Key was used with another body (`idempotency-key-reused`)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, BodyErrors, CommonErrors))]
async fn create(
    State(state): State<PollsState>,
    Writer(user): Writer,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<CreatePoll>,
) -> ApiResult<Response> {
    let now = state.gate.now();
    let request = match &key {
        None => None,
        Some(key) => Some(CreateRequest {
            key_hash: sha256_b64(key.as_bytes()),
            fingerprint: sha256_b64(&serde_json::to_vec(&body).map_err(AppError::internal)?),
            until: now + IDEMPOTENCY_WINDOW,
        }),
    };
    let mut errors = FieldErrors::new();
    let closes_at = parse_timestamp(&mut errors, body.closes_at);
    let visibility = parse_visibility(&mut errors, body.visibility);
    let results = parse_results(&mut errors, body.results);
    let event_name = errors
        .check("event_name", parse_event_name(body.event_name.as_deref()))
        .flatten();
    let options = body
        .options
        .into_iter()
        .map(OptionInput::into_text)
        .collect();
    let parsed = NewPoll::parse(
        &body.question,
        options,
        closes_at,
        visibility,
        results,
        body.max_choices,
        now,
    );
    let mut new = match parsed {
        Ok(new) if errors.is_empty() => new,
        Ok(_) => return Err(errors.into()),
        Err(more) => {
            errors.extend(more);
            return Err(errors.into());
        }
    };
    new.event_name = event_name;
    let poll = new.into_poll(PollId::new(), user, now);
    match state
        .polls
        .create_poll(&poll, request.as_ref(), now)
        .await?
    {
        PollCreated::New => Ok(poll_response(StatusCode::CREATED, &poll, user, now)),
        PollCreated::Existing { poll, fingerprint } => {
            if request.is_some_and(|r| r.fingerprint != fingerprint) {
                return Err(AppError::IdempotencyKeyReused);
            }
            // One more read, on a retry only: the poll as it stands now.
            let first = state.polls.poll(poll).await?.ok_or(AppError::Conflict)?;
            let mut response = poll_response(StatusCode::CREATED, &first, user, now);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}

fn sha256_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only `true` is supported: polls are listed for their owner.
    #[serde(default)]
    #[param(value_type = Option<bool>, schema_with = mine_schema)]
    mine: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    #[param(value_type = Option<u16>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page, as given (an opaque string: any other value
    /// gets 400).
    #[serde(default)]
    cursor: Option<String>,
}

/// `mine` is the boolean `true` or left out: the only listing there is, the caller's own.
fn mine_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// The caller's polls, newest first, one page at a time.
#[utoipa::path(get, path = "/v1/polls", operation_id = "listPolls", tag = "polls", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, description = "A page of polls", body = ListView<PollView>),
        (status = 400, description = "A bad `limit`, `cursor` or `mine`", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn list(
    State(state): State<PollsState>,
    Caller(user): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<axum::Json<ListView<PollView>>> {
    if !matches!(query.mine.as_deref(), None | Some("true")) {
        return Err(AppError::BadParameter(
            "only `mine=true` is supported: polls are listed for their owner".into(),
        ));
    }
    let limit = page_limit(query.limit.as_deref(), PAGE_DEFAULT, PAGE_MAX)?;
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state
        .polls
        .polls_by_owner(user, limit, cursor.as_ref())
        .await?;
    let now = state.gate.now();
    Ok(axum::Json(ListView {
        items: page
            .items
            .iter()
            .map(|p| PollView::new(p, Some(user), now))
            .collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

fn encode_cursor(cursor: &PollCursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode_cursor(raw: &str) -> ApiResult<PollCursor> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| AppError::BadParameter("cursor is not one this API returned".into()))
}

/// A poll. Invite-only polls are visible to their owner only.
#[utoipa::path(get, path = "/v1/polls/{id}", operation_id = "getPoll", tag = "polls", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The poll id")), 
    responses(
        (status = 200, description = "The poll", body = PollView, headers(("ETag" = String, description = "The poll's version"))),
        (status = 404, description = "No such poll, or one hidden from the caller", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn read(
    State(state): State<PollsState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let poll = state
        .polls
        .poll(parse_id(&id)?)
        .await?
        .ok_or(AppError::NotFound)?;
    if !poll.is_visible_to(user) {
        return Err(AppError::NotFound);
    }
    Ok(poll_response(StatusCode::OK, &poll, user, state.gate.now()))
}

/// Loads a poll for a write by `user`: 404 when it does not exist or is hidden from them,
/// 403 when they can see it but do not own it, 412 when `If-Match` names another version.
async fn load_for_write(
    state: &PollsState,
    user: UserId,
    raw_id: &str,
    if_match: &IfMatch,
) -> ApiResult<Poll> {
    let poll = state
        .polls
        .poll(parse_id(raw_id)?)
        .await?
        .ok_or(AppError::NotFound)?;
    if !poll.is_visible_to(user) {
        return Err(AppError::NotFound);
    }
    if !poll.is_owned_by(user) {
        return Err(AppError::Forbidden("Only the poll's owner may change it."));
    }
    if !if_match.allows(&poll.etag()) {
        return Err(AppError::PreconditionFailed);
    }
    Ok(poll)
}

/// A write lost a race with another write: with `If-Match` that is a failed precondition,
/// without it a conflict the client may retry.
fn lost_race(if_match: &IfMatch) -> impl Fn(StoreError) -> AppError + '_ {
    move |e| match e {
        StoreError::ConditionFailed if if_match.is_present() => AppError::PreconditionFailed,
        other => other.into(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"question": "Where shall we eat on Friday?"}))]
struct PatchBody {
    /// As when creating: up to 300 characters once trimmed, not blank.
    #[serde(default)]
    #[schema(
        max_length = 300,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    question: Option<String>,
    /// A new event name as when creating, or null (or blank) to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    event_name: Option<Option<String>>,
    /// A new option list (refused once a ballot is cast): as when creating.
    #[serde(default)]
    #[schema(min_items = 2, max_items = 20)]
    options: Option<Vec<OptionInput>>,
    /// A new deadline, or null to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    closes_at: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Visibility>)]
    visibility: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<ResultsVisibility>)]
    results: Option<String>,
    /// 1 to the number of options.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 20)]
    max_choices: Option<u32>,
}

/// An optional count as JSON Schema's `integer` means it: `3` or `3.0`, not `3.5`. (serde's
/// `u32` refuses `3.0`, so schema-valid requests got a 400.)
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(value) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if value.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&value) {
        return Err(serde::de::Error::custom(format!(
            "invalid value: {value}, expected a whole number from 0 to {}",
            u32::MAX
        )));
    }
    // In range and whole, so the conversion is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Some(value as u32))
}

/// Tells a field sent as `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes a poll (owner only). `If-Match` makes the change conditional on the version.
#[utoipa::path(patch, path = "/v1/polls/{id}", operation_id = "updatePoll", tag = "polls", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"), ("If-Match" = Option<String>, Header, description = "An ETag from a previous read")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "The changed poll", body = PollView, headers(("ETag" = String, description = "The new version"))),
        (status = 409, description = "The poll is closed (`poll-closed`), its options are frozen by a ballot (`options-frozen`), or it changed meanwhile (`conflict`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another version", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, BodyErrors, CommonErrors))]
async fn patch(
    State(state): State<PollsState>,
    Writer(user): Writer,
    Path(id): Path<String>,
    if_match: IfMatch,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<Response> {
    let now = state.gate.now();
    let poll = load_for_write(&state, user, &id, &if_match).await?;
    if poll.status_at(now) == PollStatus::Closed {
        return Err(AppError::PollClosed);
    }
    let mut errors = FieldErrors::new();
    let closes_at = body.closes_at.map(|c| parse_timestamp(&mut errors, c));
    let visibility = parse_visibility(&mut errors, body.visibility);
    let results = parse_results(&mut errors, body.results);
    let event_name = body
        .event_name
        .and_then(|name| errors.check("event_name", parse_event_name(name.as_deref())));
    errors.into_result()?;
    let patch = PollPatch {
        question: body.question,
        event_name,
        options: body
            .options
            .map(|o| o.into_iter().map(OptionInput::into_text).collect()),
        closes_at,
        visibility,
        results,
        max_choices: body.max_choices,
    };
    let (next, effect) = patch.apply(&poll, now)?;
    state
        .polls
        .update_poll(&poll, &next, effect.options_changed)
        .await
        .map_err(lost_race(&if_match))?;
    Ok(poll_response(StatusCode::OK, &next, user, now))
}

/// Deletes a poll (owner only). Its guests' cards answer 410 at once; its guests, their cards
/// and their ballots are removed in the background.
#[utoipa::path(delete, path = "/v1/polls/{id}", operation_id = "deletePoll", tag = "polls", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"), ("If-Match" = Option<String>, Header, description = "An ETag from a previous read")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "The poll changed meanwhile", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another version", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, CommonErrors))]
async fn delete(
    State(state): State<PollsState>,
    Writer(user): Writer,
    Path(id): Path<String>,
    if_match: IfMatch,
    request_id: Option<axum::Extension<RequestId>>,
) -> ApiResult<StatusCode> {
    let poll = load_for_write(&state, user, &id, &if_match).await?;
    // The removal of the guests' data is queued before the poll goes, so no deletion is
    // ever written without it: a failed send fails the request with nothing deleted, and a
    // deletion that fails after the send leaves a message the worker drops once it finds the
    // poll still there. The queue (one call) rather than this request pages through the
    // guest list, which may hold 50,000 guests.
    state
        .queue
        .purge(&PurgeMessage {
            purge: poll.id,
            request_id: request_id.map(|r| r.0.0),
        })
        .await?;
    state
        .polls
        .delete_poll(&poll)
        .await
        .map_err(lost_race(&if_match))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes a poll to new ballots (owner only). Closing a closed poll changes nothing.
#[utoipa::path(post, path = "/v1/polls/{id}/close", operation_id = "closePoll", tag = "polls", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The poll id"), ("If-Match" = Option<String>, Header, description = "An ETag from a previous read")),
    responses(
        (status = 200, description = "The closed poll", body = PollView, headers(("ETag" = String, description = "The new version"))),
        (status = 409, description = "The poll changed meanwhile", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another version", body = ProblemDoc, content_type = "application/problem+json"),
        OwnerErrors, AuthErrors, CommonErrors))]
async fn close(
    State(state): State<PollsState>,
    Writer(user): Writer,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    let now = state.gate.now();
    let poll = load_for_write(&state, user, &id, &if_match).await?;
    if poll.status == PollStatus::Closed {
        // Closing is idempotent: a retried close answers like the first.
        return Ok(poll_response(StatusCode::OK, &poll, user, now));
    }
    let mut next = poll.clone();
    next.status = PollStatus::Closed;
    next.version += 1;
    next.updated_at = now;
    state
        .polls
        .update_poll(&poll, &next, false)
        .await
        .map_err(lost_race(&if_match))?;
    Ok(poll_response(StatusCode::OK, &next, user, now))
}
