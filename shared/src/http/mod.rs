//! HTTP plumbing shared by every function: the platform layers (request id, problem+json for
//! every error, body limit, panic guard, health) and the extractors handlers use.

pub mod auth;
pub mod extract;
pub mod jobs;
pub mod polls;
pub mod views;
pub mod votes;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::error::{PROBLEM_JSON, Problem};

/// The largest JSON body any route accepts, in bytes. Polls need a few KiB; this leaves room
/// without letting a client make the function buffer megabytes.
pub const BODY_LIMIT: usize = 64 * 1024;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Wraps a function's routes in the layers every response passes through. `service` names
/// the function (or `dev` for the dev server) on every log line.
pub fn platform(routes: Router, service: &'static str) -> Router {
    routes
        .route("/v1/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }))
        .layer(middleware::from_fn_with_state(service, context))
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// Gives each request an id (the caller's `x-request-id` when well-formed, else a new one),
/// logs one line per request, and makes every error response a complete problem document
/// carrying that id: handler errors are completed, and bare errors from the framework (404,
/// 405, 413, a caught panic) are replaced by one.
async fn context(
    State(service): State<&'static str>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", function = service, request_id = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = complete_problem(response, &id, &path).await;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %path,
            status = status.as_u16(),
            latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request"
        );
    });
    response
}

fn is_valid_request_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

async fn complete_problem(response: Response, id: &str, path: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    let document = if is_problem {
        axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
    } else {
        None
    };
    let mut document = document.unwrap_or_else(|| framework_problem(parts.status));
    document.insert("request_id".into(), Value::String(id.to_owned()));
    document.insert("instance".into(), Value::String(path.to_owned()));
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&document).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}

/// The problem document for an error the framework produced before any handler ran.
fn framework_problem(status: StatusCode) -> Map<String, Value> {
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "No resource at this path.".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "This path does not take that method; see the Allow header.".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload-too-large",
            format!("The request body is over the limit of {BODY_LIMIT} bytes."),
        ),
        StatusCode::INTERNAL_SERVER_ERROR => (
            "internal",
            "Something went wrong on our side; quote the request id if you report it.".to_owned(),
        ),
        other => (
            "http-error",
            format!("The request failed with status {}.", other.as_u16()),
        ),
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let problem = Problem::new(status, slug, title, detail);
    match serde_json::to_value(problem) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}
