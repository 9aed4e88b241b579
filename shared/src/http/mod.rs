//! HTTP plumbing shared by every function: the platform layers (request id, problem+json for
//! every error, body limit, panic guard, health) and the extractors handlers use.

pub mod auth;
pub mod cache;
pub mod docs;
pub mod extract;
pub mod facts;
pub mod gate;
pub mod jobs;
pub mod limits;
pub mod openapi;
pub mod pages;
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
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{PROBLEM_JSON, Problem};

/// The largest JSON body any route accepts, in bytes. Polls need a few KiB; this leaves room
/// without letting a client make the function buffer megabytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The body limit of a route that raises [`BODY_LIMIT`], set next to its `DefaultBodyLimit`
/// so that a 413 names the limit the client actually has to meet.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Wraps a function's routes in the layers every response passes through, and adds the
/// platform route (health). `service` names the function (or `dev` for the dev server) on
/// every log line.
pub fn platform(routes: OpenApiRouter, platform: &Platform) -> Router {
    let (routes, _) = routes.merge(platform_routes()).split_for_parts();
    routes
        .route_layer(middleware::from_fn(record_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }))
        .layer(middleware::from_fn_with_state(platform.clone(), context))
        .layer(cors(&platform.cors_origins))
}

/// What the platform layers need to know about where they run.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The function's name (or `dev`), on every log line and metric.
    pub service: &'static str,
    /// Origins allowed by CORS; empty means no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Whether to print CloudWatch Embedded Metric Format lines.
    pub metrics: bool,
}

impl Platform {
    pub fn new(service: &'static str, config: &crate::config::Config) -> Self {
        Self {
            service,
            cors_origins: config.cors_origins.clone(),
            metrics: config.metrics,
        }
    }
}

/// CORS for browser clients on other origins: only the configured ones, with the headers the
/// API reads and the ones a client needs to see.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let request_headers = [
        "authorization",
        "content-type",
        "if-match",
        "idempotency-key",
        "x-request-id",
    ];
    let exposed = [
        "etag",
        "location",
        "x-request-id",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "idempotent-replayed",
    ];
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::PATCH,
            http::Method::DELETE,
        ])
        .allow_headers(request_headers.map(header::HeaderName::from_static))
        .expose_headers(exposed.map(header::HeaderName::from_static))
        .max_age(std::time::Duration::from_secs(600))
}

/// Notes the matched route (`/v1/polls/{id}`) for the log line and the metrics: the path
/// itself would make every poll its own metric.
async fn record_route(request: Request, next: Next) -> Response {
    if let (Some(route), Some(facts)) = (
        request.extensions().get::<axum::extract::MatchedPath>(),
        request.extensions().get::<facts::RequestFacts>(),
    ) {
        facts.set_route(route.as_str());
    }
    next.run(request).await
}

/// The routes every function serves, with their documentation.
pub fn platform_routes() -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok` when the function answers.
    status: &'static str,
}

/// Liveness: the function answers.
#[utoipa::path(get, path = "/v1/health", operation_id = "getHealth", tag = "platform", responses((status = 200, description = "The function answers", body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

async fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// Gives each request an id (the caller's `x-request-id` when well-formed, else a new one),
/// logs one line per request, and makes every error response a complete problem document
/// carrying that id: handler errors are completed, and bare errors from the framework (404,
/// 405, 413, a caught panic) are replaced by one.
async fn context(State(platform): State<Platform>, mut request: Request, next: Next) -> Response {
    let service = platform.service;
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
    let facts = facts::RequestFacts::default();
    request.extensions_mut().insert(facts.clone());
    let span = tracing::info_span!("request", function = service, request_id = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = complete_problem(response, &id, &path);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let facts = facts.get();
    if let Some(window) = facts.window {
        // The IETF RateLimit header fields: the policy, and where this window stands.
        let policy = format!("{};w={}", window.rule.limit, window.rule.window);
        let state = format!(
            "limit={}, remaining={}, reset={}",
            window.rule.limit, window.remaining, window.reset
        );
        for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let route = facts.route.as_deref().unwrap_or("unmatched");
    // The route's pattern is logged, never the path: a guest's path carries the invite token
    // (`/i/{token}`, `/v1/invites/{token}`), which is the whole credential for their ballot,
    // and logs are read by more people, for longer, than the table that keeps only its hash.
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route,
            status = status.as_u16(),
            latency_ms,
            user_id = facts.user.as_deref().unwrap_or("-"),
            "request"
        );
    });
    if platform.metrics {
        crate::metrics::request(
            service,
            &id,
            method.as_str(),
            route,
            status.as_u16(),
            latency_ms,
        );
    }
    response
}

fn is_valid_request_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Writes the complete problem document of an error response: the handler's own problem (from
/// the response's extensions) or, for a bare error from the framework, one that names the
/// status. Either way it is serialised once, here, with the request's id and path.
fn complete_problem(response: Response, id: &str, path: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    let problem = parts
        .extensions
        .remove::<Problem>()
        .unwrap_or_else(|| framework_problem(parts.status));
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&problem.complete(id, path)).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}

/// The problem document for an error the framework produced before any handler ran.
fn framework_problem(status: StatusCode) -> Problem {
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
    Problem::new(status, slug, title, detail)
}
