//! The OpenAPI 3.1 document: each function's routes are registered with `utoipa-axum`, which
//! takes the route and its documentation from the same `#[utoipa::path]` item, so the document
//! cannot leave a route out. This module holds what is shared: the API's description, the
//! security schemes, the reusable error responses, and the `/docs` page.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi as _};

use crate::error::ProblemDoc;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tally API",
        version = "1.0.0",
        description = "Polls and QR-code invitations. Every error is application/problem+json (RFC 9457); see API.md."
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "polls", description = "Polls (owner-only writes)"),
        (name = "votes", description = "Ballots, results, guest invites"),
        (name = "jobs", description = "Render jobs: invite cards, share QR codes, result charts"),
        (name = "platform", description = "Health and documentation")
    )
)]
struct Base;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // A guest's invite token travels as `Authorization: Invite <token>`.
        components.add_security_scheme(
            "invite",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Invite <token>`: the token from the guest's card",
            ))),
        );
    }
}

/// The document's skeleton, to which every function's routes add their paths.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// The whole API's document from the merged registrations of every function's routes, as
/// `shared/openapi.json` keeps it: pretty JSON with a final newline.
pub fn document<S: Clone + Send + Sync + 'static>(
    routes: utoipa_axum::router::OpenApiRouter<S>,
) -> Result<String, String> {
    let (_, paths) = routes.split_for_parts();
    let mut doc = base();
    doc.merge(paths);
    doc.to_pretty_json()
        .map(|json| json + "\n")
        .map_err(|e| e.to_string())
}

/// Errors of any route that reads a JSON body.
#[derive(Debug, IntoResponses)]
pub enum BodyErrors {
    /// The body is not the expected JSON (syntax, types, unknown fields).
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(ProblemDoc),
    /// The body is over the route's limit: 64 KiB, or 4 MiB for a guest list.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDoc),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    MediaType(ProblemDoc),
    /// Fields failed validation; `errors` names them.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(ProblemDoc),
}

/// Errors of any route that needs a caller.
#[derive(Debug, IntoResponses)]
pub enum AuthErrors {
    /// No valid credentials.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
}

/// Errors any route may give.
#[derive(Debug, IntoResponses)]
pub enum CommonErrors {
    /// Too many requests; see `Retry-After`.
    #[response(
        status = 429,
        content_type = "application/problem+json",
        headers(("Retry-After" = u32, description = "Seconds until the window resets"))
    )]
    RateLimited(ProblemDoc),
    /// A bug or an outage; quote the request id.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(ProblemDoc),
    /// Storage is busy (throttling, or writes that kept conflicting); retry shortly.
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))
    )]
    Unavailable(ProblemDoc),
}

/// `GET /docs`: the document rendered for a person, by a script served from this origin (the
/// page's Content-Security-Policy allows no other script and no other host).
pub async fn docs_page() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(include_str!("../../assets/docs.html")),
    )
}

pub async fn docs_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../assets/docs.js"),
    )
}
