//! The pages function: the web pages people open. `/i/{token}` is the guest's vote page that an
//! invite card's QR code encodes, `/p/{id}` the page behind a poll's share QR code, and `/` the
//! organiser's single page (sign in, polls, invitations, render progress, live results).
//!
//! Every page is a static file embedded in the binary: plain HTML, CSS and JavaScript with no
//! build step and no third-party host. The pages hold no data of their own; their scripts call
//! the API on the same origin, which already enforces who may see what, so this module needs no
//! storage, no keys and no AWS permissions. The HTML is the same for every token and poll: the
//! scripts read the id from the address bar.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::map_response_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use utoipa_axum::router::OpenApiRouter;

/// Scripts and styles come only from files on this origin (no inline script or style, no
/// `eval`), the scripts talk only to this origin and to the live-results WebSocket (the dev
/// server's own on this origin; on AWS the Events API's real-time endpoint), and no other
/// site may frame the pages. Navigating to a presigned download URL on the file store's origin
/// is not a fetch, so `connect-src` does not block downloads.
pub fn content_security_policy(live_realtime_url: &str) -> String {
    let live = origin_of(live_realtime_url);
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {live}; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// `scheme://host[:port]` of a URL; characters a policy could be broken with are dropped.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("wss", url));
    let host = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{host}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ":/.-_[]".contains(*c))
        .collect()
}

/// An embedded static file under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 7] = [
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/style.css"),
    },
    Asset {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/common.js"),
    },
    Asset {
        name: "ballot.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/ballot.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset {
        name: "guest.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/guest.js"),
    },
    Asset {
        name: "share.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/share.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../assets/icon.svg"),
    },
];

/// The HTML templates, before their asset links are versioned.
const ORGANISER_HTML: &str = include_str!("../../assets/index.html");
const GUEST_HTML: &str = include_str!("../../assets/guest.html");
const SHARE_HTML: &str = include_str!("../../assets/share.html");

/// The templates write `{{v}}` where an asset link takes the version.
const VERSION_MARK: &str = "{{v}}";

/// A short hash of every embedded file. Asset links carry it (`/assets/app.js?v=<version>`),
/// so an asset may be cached for a year: a deploy that changes any file changes every link,
/// and a page never runs with the scripts of another release. It is also every page's ETag.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for html in [ORGANISER_HTML, GUEST_HTML, SHARE_HTML] {
        hash.update(html.as_bytes());
    }
    for asset in &ASSETS {
        hash.update(asset.name.as_bytes());
        hash.update(asset.body);
    }
    hash.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
});

/// The three pages with their asset links versioned, built once per process.
static PAGES: LazyLock<[String; 3]> = LazyLock::new(|| {
    [ORGANISER_HTML, GUEST_HTML, SHARE_HTML].map(|html| html.replace(VERSION_MARK, &VERSION))
});

/// The page an address serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Organiser,
    Guest,
    Share,
}

impl Page {
    fn html(self) -> &'static str {
        let pages = &*PAGES;
        match self {
            Self::Organiser => &pages[0],
            Self::Guest => &pages[1],
            Self::Share => &pages[2],
        }
    }

    /// Pages are revalidated on every load (a cheap 304 through the ETag) so that a deploy
    /// shows at once. The guest page is not stored at all: its address holds the invite
    /// token, a credential, and no cache should keep anything under that key.
    fn cache_control(self) -> &'static str {
        match self {
            Self::Guest => "no-store",
            Self::Organiser | Self::Share => "no-cache",
        }
    }
}

/// The pages function's routes: the pages (which are no part of the API, so they add nothing
/// to its document) and the API's documentation.
pub fn routes(live_realtime_url: &str) -> OpenApiRouter {
    OpenApiRouter::from(router(live_realtime_url)).merge(super::docs::routes())
}

/// The pages' router, without state: the pages Lambda binary serves it without opening any
/// storage connection (it has no permissions to), and tests call it directly.
pub fn router(live_realtime_url: &str) -> Router {
    let policy = HeaderValue::from_str(&content_security_policy(live_realtime_url))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    Router::new()
        .route("/", get(organiser))
        .route("/i/{token}", get(guest))
        .route("/p/{id}", get(share))
        .route("/assets/{file}", get(asset))
        .layer(map_response_with_state(policy, security_headers))
}

async fn organiser(headers: HeaderMap) -> Response {
    page(Page::Organiser, &headers)
}

/// The token is not checked here: the page asks the API, which answers 404 for an unknown
/// token, and the page says so in words a guest understands.
async fn guest(Path(_token): Path<String>, headers: HeaderMap) -> Response {
    page(Page::Guest, &headers)
}

async fn share(Path(_id): Path<String>, headers: HeaderMap) -> Response {
    page(Page::Share, &headers)
}

fn page(page: Page, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", *VERSION);
    if not_modified(headers, &etag) {
        return cached(StatusCode::NOT_MODIFIED, page.cache_control(), &etag, "");
    }
    let mut response = cached(StatusCode::OK, page.cache_control(), &etag, page.html());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A versioned link (`?v=` with the current version) is immutable for a year; any other
/// request for the file, such as an old page's link after a deploy, is revalidated.
async fn asset(
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let current = format!("v={}", *VERSION);
    let cache = if query.as_deref() == Some(current.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let etag = format!("\"{}\"", *VERSION);
    if not_modified(&headers, &etag) {
        return cached(StatusCode::NOT_MODIFIED, cache, &etag, "");
    }
    let mut response = cached(StatusCode::OK, cache, &etag, asset.body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    response
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        })
}

fn cached(
    status: StatusCode,
    cache_control: &'static str,
    etag: &str,
    body: impl Into<axum::body::Body>,
) -> Response {
    let mut response = (status, body.into()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// Added to every response of this router, errors included.
async fn security_headers(State(policy): State<HeaderValue>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The guest page's address holds the invite token: no request may carry it elsewhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // For browsers that predate `frame-ancestors`.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    /// The budget for one page: its HTML, scripts and styles together. It was 30 KiB until
    /// the organiser's page got the guest list (table, search, revoke, reissue, turnout),
    /// which adds about 5 KiB to that page alone, 36 KiB until the poll page listed its past
    /// jobs with their downloads (about 1.2 KiB), and then 37 KiB until every page got the
    /// live-results client (the socket protocol, the fallback to polling, the reconnects:
    /// about 6.5 KiB in `common.js`). The assets are cached for a year once loaded.
    const PAGE_BUDGET: usize = 45 * 1024;

    async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::empty()).expect("request");
        let response = router("ws://127.0.0.1:3000/event/realtime")
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, headers, body.to_vec())
    }

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn assert_security_headers(path: &str, headers: &HeaderMap) {
        let csp = header(headers, "content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(
            header(headers, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        assert_eq!(header(headers, "referrer-policy"), "no-referrer", "{path}");
    }

    /// The `/assets/...` links a page makes, with their query strings.
    fn asset_links(html: &str) -> Vec<String> {
        html.split('"')
            .filter(|part| part.starts_with("/assets/"))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn pages_are_html_with_security_headers_and_within_budget() {
        for (path, cache) in [
            ("/", "no-cache"),
            ("/i/3tJ4n3ZQ2yq8kE5fX0pLr7VbNcWdAaGhIjKlMnOpQrs", "no-store"),
            ("/p/0192f1c4-7a2b-7cde-8f01-23456789abcd", "no-cache"),
        ] {
            let (status, headers, body) = get(path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(
                header(&headers, "content-type"),
                "text/html; charset=utf-8",
                "{path}"
            );
            assert_eq!(header(&headers, "cache-control"), cache, "{path}");
            assert_security_headers(path, &headers);
            let html = String::from_utf8(body).expect("utf-8");
            assert!(!html.contains(VERSION_MARK), "{path}: unversioned link");

            let links = asset_links(&html);
            assert!(
                links.iter().any(|l| l.contains(".js?v=")),
                "{path}: {links:?}"
            );
            assert!(
                links.iter().any(|l| l.contains(".css?v=")),
                "{path}: {links:?}"
            );
            let mut total = html.len();
            for link in &links {
                let (status, headers, body) = get(link, &[]).await;
                assert_eq!(status, StatusCode::OK, "{link}");
                assert_eq!(
                    header(&headers, "cache-control"),
                    "public, max-age=31536000, immutable",
                    "{link}"
                );
                assert_security_headers(link, &headers);
                if !link.contains(".svg") {
                    total += body.len();
                }
            }
            assert!(
                total < PAGE_BUDGET,
                "{path}: {total} bytes of HTML, scripts and styles; the budget is {PAGE_BUDGET}"
            );
        }
    }

    #[tokio::test]
    async fn assets_have_their_content_types() {
        for (file, content_type) in [
            ("style.css", "text/css; charset=utf-8"),
            ("common.js", "text/javascript; charset=utf-8"),
            ("ballot.js", "text/javascript; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("guest.js", "text/javascript; charset=utf-8"),
            ("share.js", "text/javascript; charset=utf-8"),
            ("icon.svg", "image/svg+xml"),
        ] {
            let path = format!("/assets/{file}");
            let (status, headers, body) = get(&path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header(&headers, "content-type"), content_type, "{path}");
            // Without the current version the link may be stale: revalidate it.
            assert_eq!(header(&headers, "cache-control"), "no-cache", "{path}");
            assert_security_headers(&path, &headers);
            assert!(!body.is_empty(), "{path}");
        }
        let (status, headers, _) = get("/assets/missing.js", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_security_headers("/assets/missing.js", &headers);
    }

    #[tokio::test]
    async fn a_known_version_is_not_sent_again() {
        let (_, headers, _) = get("/", &[]).await;
        let etag = header(&headers, "etag").to_owned();
        assert!(etag.starts_with('"'), "{etag}");
        let (status, headers, body) = get("/", &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_security_headers("/ (304)", &headers);
        let (status, _, body) = get("/assets/app.js", &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
    }

    /// Whether an HTML text has an attribute such as `onclick=`.
    fn has_event_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let name: String = html[i + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            !name.is_empty() && html[i + 3 + name.len()..].starts_with('=')
        })
    }

    /// No inline script, style or event handler (the policy would block them, so they would
    /// be dead code), and nothing fetched from another host.
    #[test]
    fn files_hold_no_inline_code_and_name_no_other_host() {
        for html in [ORGANISER_HTML, GUEST_HTML, SHARE_HTML] {
            let lower = html.to_ascii_lowercase();
            for (i, _) in lower.match_indices("<script") {
                let tag = &lower[i..i + lower[i..].find('>').unwrap_or(0)];
                assert!(tag.contains(" src="), "inline script: {tag}");
            }
            assert!(!lower.contains("<style"), "inline style element");
            assert!(!lower.contains(" style="), "inline style attribute");
            assert!(!has_event_attribute(&lower), "inline event handler");
        }
        let texts = [ORGANISER_HTML, GUEST_HTML, SHARE_HTML]
            .into_iter()
            .map(str::as_bytes)
            .chain(ASSETS.iter().map(|a| a.body));
        for text in texts {
            let text = String::from_utf8_lossy(text);
            assert!(!text.contains("https://"), "a link to another host");
            // The SVG namespace is a name, not an address anything is fetched from.
            let rest = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!rest.contains("http://"), "a link to another host");
            assert!(!text.contains("innerHTML"), "markup from strings");
            assert!(
                !text.contains("localStorage."),
                "local storage outlives the tab"
            );
        }
    }
}
