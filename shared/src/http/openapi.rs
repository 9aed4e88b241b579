//! The OpenAPI 3.1 document: each function's routes are registered with `utoipa-axum`, which
//! takes the route and its documentation from the same `#[utoipa::path]` item, so the document
//! cannot leave a route out. This module holds what is shared: the API's description, the
//! security schemes and the reusable error responses.

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
    let mut json = serde_json::to_value(&doc).map_err(|e| e.to_string())?;
    refine(&mut json);
    sort_keys(&mut json);
    serde_json::to_string_pretty(&json)
        .map(|json| json + "\n")
        .map_err(|e| e.to_string())
}

/// Puts every object's keys in alphabetical order. serde_json keeps insertion order when any
/// crate in the build enables its `preserve_order` feature (a `cargo test --workspace` build
/// does, a `-p tally-tests` build does not), so without this the same routes would give two
/// different files depending on which packages were built together.
fn sort_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, mut child) in entries {
                sort_keys(&mut child);
                map.insert(key, child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// "Holds a character other than white space", where white space is what Rust's `str::trim`
/// removes (Unicode `White_Space`), so a text the server trims to nothing fails the pattern and
/// every other passes. `\\S` would not do: ECMAScript's `\\s` leaves out U+0085 and adds U+FEFF.
pub const NOT_BLANK: &str =
    r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// What `#[schema]` attributes cannot say, added to the generated JSON: `uniqueItems` (utoipa
/// has no attribute for it), the limits of an option given as plain text (a tuple variant's
/// field takes no attributes), and the OpenAPI links from each creating response to the
/// operations that use the id it returns, so that a client (or schemathesis's stateful phase)
/// can follow them. A name that is missing is skipped, so a renamed field shows up as a
/// missing keyword in the document's tests rather than a panic here.
fn refine(doc: &mut serde_json::Value) {
    use serde_json::json;
    let schemas = &mut doc["components"]["schemas"];
    for (schema, field) in [
        ("CreatePoll", "options"),
        ("PatchBody", "options"),
        ("CastBody", "choices"),
    ] {
        if let Some(property) = schemas[schema]["properties"][field].as_object_mut() {
            property.insert("uniqueItems".into(), json!(true));
        }
    }
    // Option ids are `o1` to `o20` (`domain::OptionId`); which of them a poll has is its own.
    if let Some(items) = schemas["CastBody"]["properties"]["choices"]["items"].as_object_mut() {
        items.insert("pattern".into(), json!("^o([1-9]|1[0-9]|20)$"));
    }
    if let Some(text) = schemas["OptionInput"]["oneOf"][0].as_object_mut() {
        text.insert("minLength".into(), json!(1));
        text.insert("maxLength".into(), json!(120));
        text.insert("pattern".into(), json!(NOT_BLANK));
    }
    // The header's rule: 1 to 255 visible ASCII characters.
    for (path, method) in [("/v1/polls/{id}/votes", "post"), ("/v1/polls", "post")] {
        for parameter in doc["paths"][path][method]["parameters"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if parameter["name"] == "Idempotency-Key" {
                parameter["schema"] = json!({ "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" });
            }
        }
    }
    let by_id = |description: &str, operation: &str| json!({ "operationId": operation, "parameters": { "id": "$response.body#/id" }, "description": description });
    let poll_links = json!({
        "GetPoll": by_id("Read the new poll", "getPoll"),
        "UpdatePoll": by_id("Change it", "updatePoll"),
        "ClosePoll": by_id("Close it", "closePoll"),
        "DeletePoll": by_id("Delete it", "deletePoll"),
        "CastVote": by_id("Vote in it", "castVote"),
        "GetResults": by_id("Read its results", "getResults"),
        "CreateInviteJob": by_id("Render invite cards for it", "createInviteJob"),
        "CreateQrJob": by_id("Render its share QR code", "createQrJob"),
        "CreateChartJob": by_id("Render its results chart", "createChartJob"),
    });
    let job_links = json!({
        "GetJob": by_id("Follow the job", "getJob"),
        "DownloadJobFile": by_id("Download its file once done", "downloadJobFile"),
    });
    let paths = &mut doc["paths"];
    let creating = [
        ("/v1/polls", "post", &poll_links),
        ("/v1/polls/{id}/invites", "post", &job_links),
        ("/v1/polls/{id}/qr", "post", &job_links),
        ("/v1/polls/{id}/chart", "post", &job_links),
    ];
    for (path, method, links) in creating {
        let Some(responses) = paths[path][method]["responses"].as_object_mut() else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if status.starts_with('2')
                && let Some(response) = response.as_object_mut()
            {
                response.insert("links".into(), links.clone());
            }
        }
    }
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

/// Errors of a route on one of the caller's own polls.
#[derive(Debug, IntoResponses)]
pub enum OwnerErrors {
    /// The caller may see the poll but does not own it
    #[response(status = 403, content_type = "application/problem+json")]
    NotOwner(ProblemDoc),
    /// No such poll, or one hidden from the caller
    #[response(status = 404, content_type = "application/problem+json")]
    NoPoll(ProblemDoc),
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
