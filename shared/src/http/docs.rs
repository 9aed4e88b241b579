//! The API's documentation: the OpenAPI document and the page that renders it. The document is
//! a static file, `shared/openapi.json`, generated from every function's route registrations
//! (`tests/tests/api/openapi.rs` fails when it is stale and rewrites it with `BLESS=1`), so
//! only the function that serves it links it, and no function links another one's routes to
//! describe them.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi;

/// The generated document, as served.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// The documentation routes, with their own documentation.
pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(openapi_doc))
        .routes(routes!(docs))
        .routes(routes!(docs_script))
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "platform", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_doc() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

/// The API documentation for a person.
#[utoipa::path(get, path = "/docs", tag = "platform", responses((status = 200, description = "An HTML page", content_type = "text/html")))]
async fn docs() -> impl IntoResponse {
    openapi::docs_page().await
}

/// The script of the documentation page.
#[utoipa::path(get, path = "/docs/docs.js", tag = "platform", responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
async fn docs_script() -> impl IntoResponse {
    openapi::docs_script().await
}
