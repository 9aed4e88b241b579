//! The API's documentation: the OpenAPI document and the page that renders it. The document is
//! a static file, `shared/openapi.json`, generated from every function's route registrations
//! (`tests/tests/api/openapi.rs` fails when it is stale and rewrites it with `BLESS=1`), so
//! only the function that serves it links it, and no function links another one's routes to
//! describe them.
//!
//! `/docs` is Swagger UI: every operation with its parameters, request and response schemas
//! and examples, and "Try it out" with the bearer token entered once under "Authorize". Its
//! files are embedded in the binary by `utoipa-swagger-ui`'s `vendored` feature (the build
//! downloads nothing) and served from this origin under `/docs/`, so the page loads nothing
//! from another host. The page and its files are not API operations, so they are plain routes
//! that add nothing to the document.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::Config;

/// The generated document, as served.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// The policy of `/docs` and its files. Swagger UI's scripts are files on this origin (no
/// inline script, no `eval`), and "Try it out" calls only this origin. Unlike the other pages
/// it needs inline styles (React sets `style` attributes) and `data:` images (the icons in
/// its stylesheet); those two relaxations apply to the documentation only, and
/// `pages::CONTENT_SECURITY_POLICY` stays strict for everything else.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Swagger UI's configuration, written into `swagger-initializer.js`: this origin's document,
/// "Try it out" open by default, operation ids shown (they are the names generated clients
/// use), and no validator badge (it would load an image from another host).
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::from("/v1/openapi.json")
            .try_it_out_enabled(true)
            .display_operation_id(true)
            .display_request_duration(true)
            .filter(true)
            .validator_url("none"),
    )
});

/// The documentation routes: the document (an API operation, so it is documented) and the
/// page with its files (not API operations, so plain routes).
pub fn routes() -> OpenApiRouter {
    let page = Router::new()
        .route("/docs", get(docs))
        .route("/docs/{file}", get(docs_file));
    OpenApiRouter::new()
        .routes(routes!(openapi_doc))
        .merge(page.into())
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "platform", operation_id = "getOpenApiDocument",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_doc() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

/// `GET /docs`: the page that loads Swagger UI's files from `/docs/` (absolute links, so the
/// page works at `/docs` without a trailing slash).
async fn docs() -> Response {
    with_docs_headers(
        StatusCode::OK,
        "text/html; charset=utf-8",
        include_str!("../../assets/docs.html").as_bytes().to_vec(),
    )
}

/// `GET /docs/{file}`: one of Swagger UI's embedded files, or 404.
async fn docs_file(Path(file): Path<String>) -> Response {
    match utoipa_swagger_ui::serve(&file, CONFIG.clone()) {
        // `serve` maps an empty path to its own index.html, whose relative links would not
        // resolve under /docs; only named files are served here.
        Ok(Some(found)) if !file.is_empty() && file != "index.html" => with_docs_headers(
            StatusCode::OK,
            &found.content_type,
            found.bytes.into_owned(),
        ),
        Ok(_) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "swagger ui file");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn with_docs_headers(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The files change only with a deploy; revalidating keeps a new version visible at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let router: Router = routes().split_for_parts().0;
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The page loads Swagger UI's files from `/docs/` on this origin, each is served, and the
    /// initializer points at this origin's document with "Try it out" on.
    #[tokio::test]
    async fn the_page_loads_swagger_ui_from_this_origin() {
        let (status, html) = get("/docs").await;
        assert_eq!(status, StatusCode::OK);
        for file in [
            "swagger-ui.css",
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
            "swagger-initializer.js",
        ] {
            assert!(html.contains(&format!("\"/docs/{file}\"")), "no {file}");
            let (status, body) = get(&format!("/docs/{file}")).await;
            assert_eq!(status, StatusCode::OK, "{file}");
            assert!(body.len() > 100, "{file} is nearly empty");
        }
        assert!(
            !html.contains("http:") && !html.contains("https:"),
            "{html}"
        );
        let (_, init) = get("/docs/swagger-initializer.js").await;
        assert!(init.contains("\"/v1/openapi.json\""), "{init}");
        assert!(init.contains("\"tryItOutEnabled\": true"), "{init}");
        assert!(!init.contains("petstore"), "{init}");
        assert_eq!(get("/docs/index.html").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get("/docs/nothing.js").await.0, StatusCode::NOT_FOUND);
    }
}
