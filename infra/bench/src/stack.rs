//! The pieces every benchmark shares: the dev server's stack, served on loopback, and an HTTP
//! client for it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tally::auth::TokenIssuer;
use tally::clock::SystemClock;
use tally::config::Config;
use tally::domain::UserId;
use tally_dev::{Stack, StackOptions, Storage};
use tokio::sync::oneshot;

/// Access tokens minted by the benchmarks live an hour, so that no run outlives its tokens.
const TOKEN_TTL: i64 = 3_600;

/// The configuration the benchmarks run with: the dev server's defaults, rate limits off (as
/// the README advises for load tests), and hour-long tokens.
pub fn config() -> Result<Config, String> {
    Config::from_lookup(|name| match name {
        "TALLY_RATE_LIMITS" => Some("off".into()),
        "TALLY_ACCESS_TOKEN_TTL" => Some(TOKEN_TTL.to_string()),
        _ => None,
    })
    .map_err(|e| e.to_string())
}

/// The stack options of the dev server (`infra/src/main.rs`): free loopback ports for the
/// engines, the wall clock, and its queue timing.
pub fn dev_server_options() -> StackOptions {
    let mut options = StackOptions::local(Arc::new(SystemClock));
    options.queue.visibility_timeout = Duration::from_secs(5);
    options
}

/// The whole dev-server stack over in-memory engines, with a token issuer for many users.
pub async fn start_stack() -> Result<(Stack, Config, TokenIssuer), String> {
    let config = config()?;
    let stack = Stack::start(&config, Storage::Memory, dev_server_options()).await?;
    let issuer = TokenIssuer::new(&stack.keys, &config.issuer, &config.audience, TOKEN_TTL)?;
    Ok((stack, config, issuer))
}

/// The whole dev-server stack with its data on disk under `dir`, as the dev server keeps it
/// (`Storage::Dir`: the engine's SQLite file, the S3 folder, the queue's files, the keys), so
/// that what a write costs on disk is in the figures.
pub async fn start_stack_on_disk(
    dir: &std::path::Path,
) -> Result<(Stack, Config, TokenIssuer), String> {
    let dir_text = dir.to_str().ok_or("the data folder is not valid UTF-8")?;
    let config = Config::from_lookup(|name| match name {
        "TALLY_RATE_LIMITS" => Some("off".into()),
        "TALLY_ACCESS_TOKEN_TTL" => Some(TOKEN_TTL.to_string()),
        "TALLY_DATA_DIR" => Some(dir_text.to_owned()),
        _ => None,
    })
    .map_err(|e| e.to_string())?;
    let stack = Stack::start(&config, Storage::Dir(dir.to_owned()), dev_server_options()).await?;
    let issuer = TokenIssuer::new(&stack.keys, &config.issuer, &config.audience, TOKEN_TTL)?;
    Ok((stack, config, issuer))
}

/// A token for a user who exists only in the token: what a voter needs, without an Argon2
/// hash per voter. Returns the user's id with it.
pub fn mint(issuer: &TokenIssuer) -> Result<(UserId, String), String> {
    let user = UserId::new();
    let token = issuer.issue(user, time::OffsetDateTime::now_utc())?;
    Ok((user, token))
}

/// A router served on a free loopback port until [`Served::stop`] (or drop).
#[derive(Debug)]
pub struct Served {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Serves `app` with `axum::serve`, as the dev server does (`infra/src/main.rs`).
    pub async fn start(app: Router) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("bind a loopback port: {e}"))?;
        let base = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            // With the peer address, as the dev server serves it (the auth routes' rate
            // limits count by client IP).
            let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("tally-bench: the served router stopped: {e}");
            }
        });
        Ok(Self {
            base,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// Stops accepting, lets open requests finish (at most a few seconds), and returns.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A pooled HTTP/1.1 client: one connection per request in flight, kept alive between them.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// A reply, read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The reply when its status is `expected`, else an error that shows it.
    pub fn expect(self, expected: u16, what: &str) -> Result<Self, String> {
        if self.status.as_u16() == expected {
            Ok(self)
        } else {
            Err(format!(
                "{what}: expected {expected}, got {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ))
        }
    }
}

/// A request with an optional bearer token and JSON body.
pub fn request(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(body)).map_err(|e| e.to_string())
}

/// Sends `request` and reads the whole reply, giving up after `limit`.
pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    limit: Duration,
) -> Result<Reply, String> {
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("no reply within {limit:?}"))?
}

/// Creates a poll through the API and returns its id.
pub async fn create_poll(
    client: &HttpClient,
    base: &str,
    owner: &str,
    body: &serde_json::Value,
) -> Result<String, String> {
    let reply = send(
        client,
        request(
            Method::POST,
            &format!("{base}/v1/polls"),
            Some(owner),
            Some(body),
        )?,
        Duration::from_secs(30),
    )
    .await?
    .expect(201, "create a poll")?;
    reply.json()["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the created poll has no id".into())
}

/// Items per page of the ballot scans: without a limit the engine reads every item after the
/// page's start (and keeps the first megabyte of them), so scanning a table of a million and
/// a half items page by page took hours.
const SCAN_PAGE: i32 = 5_000;

/// What follows `prefix` in the key (`PK`) of every ballot item whose key starts with it,
/// scanned from the engine (not through Tally): `BALLOT#<poll>#` gives that poll's voters,
/// `BALLOT#` every `<poll>#<voter>`.
pub async fn ballot_keys(stack: &Stack, prefix: &str) -> Result<Vec<String>, String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut keys = Vec::new();
    let mut start = None;
    // Bounded: the tables the benchmarks fill hold far fewer pages than this.
    for _ in 0..1_000_000 {
        let page = stack
            .store
            .client()
            .scan()
            .table_name(stack.store.table())
            .filter_expression("begins_with(PK, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
            .projection_expression("PK")
            .set_exclusive_start_key(start)
            .limit(SCAN_PAGE)
            .send()
            .await
            .map_err(|e| format!("scan the ballots: {e:?}"))?;
        keys.extend(page.items().iter().filter_map(|item| match item.get("PK") {
            Some(AttributeValue::S(pk)) => pk.strip_prefix(prefix).map(str::to_owned),
            _ => None,
        }));
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return Ok(keys),
        }
    }
    Err("scan the ballots: too many pages".into())
}
