//! Live results on the dev server: the count function's publishes fan out to WebSocket
//! watchers over the subset of the AppSync Events protocol the pages speak, on the API's own
//! origin (`/event/realtime`), so a page and a test use the same client code locally and on
//! AWS.
//!
//! Each poll has a `watch` channel holding its latest results. A publish replaces the value
//! and never waits for anyone, so a slow watcher only ever misses intermediate values (each
//! watcher's task sends the newest value when its socket takes it), and the count function is
//! never held up. Publishes are paced to at most one per poll per second, with the newest
//! value always sent at the end of the second: the dev server counts every few milliseconds,
//! which AWS's one-second batching window does not.
//!
//! Subscriptions are decided by `tally::live::authorizer::authorize`, the same rule as the
//! Lambda authorizer's on AWS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tally::clock::SharedClock;
use tally::domain::PollId;
use tally::live::authorizer::{AuthorizerRequest, RequestContext, authorize};
use tally::live::{LiveKey, LiveResults};
use tally::ports::ResultsFeed;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The WebSocket subprotocol of AppSync Events.
pub const PROTOCOL: &str = "aws-appsync-event-ws";
/// The path the dev server serves the protocol on.
pub const PATH: &str = "/event/realtime";

/// The hub's limits.
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// The least time between two publishes of one poll.
    pub pace: Duration,
    /// Subscriptions one connection may hold (AppSync's limit is per connection too).
    pub subscriptions_per_connection: usize,
    /// Connections the hub holds at once; more are refused with 503.
    pub connections: usize,
    /// A connection with no subscription for this long is closed.
    pub idle: Duration,
    /// Keep-alive (`ka`) messages are sent this often; `connection_ack` promises one within
    /// five times as long.
    pub keep_alive: Duration,
}

impl Default for LiveLimits {
    fn default() -> Self {
        Self {
            pace: Duration::from_secs(1),
            subscriptions_per_connection: 20,
            connections: 20_000,
            idle: Duration::from_secs(60),
            keep_alive: Duration::from_secs(60),
        }
    }
}

/// What the hub has done, for the bench and the tests.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Values handed to watchers' channels (after pacing).
    pub publishes: AtomicU64,
    /// `data` messages written to sockets.
    pub deliveries: AtomicU64,
    pub connections: AtomicUsize,
}

/// The dev server's fan-out. Cloning shares it.
#[derive(Debug, Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: LiveKey,
    clock: SharedClock,
    limits: LiveLimits,
    polls: Mutex<HashMap<PollId, Feed>>,
    stats: LiveStats,
}

/// One poll's channel and its pacing.
#[derive(Debug)]
struct Feed {
    tx: watch::Sender<Option<Arc<str>>>,
    /// The newest results not yet sent, waiting for the pace.
    pending: Option<LiveResults>,
    /// The `total` of the newest results taken (sent or pending): an older publish arriving
    /// late (another shard, a retry) is dropped.
    newest_total: u64,
    last_sent: Option<Instant>,
    flush_scheduled: bool,
}

impl Feed {
    fn new() -> Self {
        Self {
            tx: watch::Sender::new(None),
            pending: None,
            newest_total: 0,
            last_sent: None,
            flush_scheduled: false,
        }
    }
}

impl LiveHub {
    pub fn new(key: LiveKey, clock: SharedClock, limits: LiveLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                key,
                clock,
                limits,
                polls: Mutex::new(HashMap::new()),
                stats: LiveStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &LiveStats {
        &self.inner.stats
    }

    /// The WebSocket route, to merge into the dev server's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route(PATH, get(upgrade))
            .with_state(self.clone())
    }

    /// A receiver of `poll`'s channel that has seen its current value.
    fn subscribe(&self, poll: PollId) -> watch::Receiver<Option<Arc<str>>> {
        let mut polls = self
            .inner
            .polls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut rx = polls.entry(poll).or_insert_with(Feed::new).tx.subscribe();
        // As on AppSync, a subscriber gets what is published after it subscribed; the page
        // reads the results once itself after `subscribe_success`.
        rx.borrow_and_update();
        rx
    }

    /// Takes `results` in: sent now if the poll's last send is a pace ago, else kept as the
    /// pending value for a flush at the end of the pace.
    fn take(&self, poll: PollId, results: LiveResults) {
        let now = Instant::now();
        let mut polls = self
            .inner
            .polls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let feed = polls.entry(poll).or_insert_with(Feed::new);
        if results.total < feed.newest_total {
            return;
        }
        feed.newest_total = results.total;
        let due = feed.last_sent.map(|t| t + self.inner.limits.pace);
        match due {
            Some(due) if due > now => {
                feed.pending = Some(results);
                if !feed.flush_scheduled {
                    feed.flush_scheduled = true;
                    let hub = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(due).await;
                        hub.flush(poll);
                    });
                }
            }
            _ => {
                feed.pending = None;
                self.send(feed, &results, now);
            }
        }
    }

    fn flush(&self, poll: PollId) {
        let mut polls = self
            .inner
            .polls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = polls.get_mut(&poll) {
            feed.flush_scheduled = false;
            if let Some(results) = feed.pending.take() {
                self.send(feed, &results, Instant::now());
            }
        }
    }

    fn send(&self, feed: &mut Feed, results: &LiveResults, now: Instant) {
        feed.last_sent = Some(now);
        let Ok(text) = serde_json::to_string(results) else {
            return;
        };
        feed.tx.send_replace(Some(Arc::from(text)));
        self.inner.stats.publishes.fetch_add(1, Ordering::Relaxed);
    }

    fn decide(&self, token: &str, operation: &str, channel: Option<&str>) -> bool {
        let request = AuthorizerRequest {
            authorization_token: token.to_owned(),
            request_context: RequestContext {
                operation: operation.to_owned(),
                channel: channel.map(str::to_owned),
            },
        };
        authorize(&self.inner.key, &request, self.inner.clock.now()).is_authorized
    }
}

#[async_trait]
impl ResultsFeed for LiveHub {
    async fn publish(&self, results: &LiveResults) -> Result<(), String> {
        let poll: PollId = results
            .poll_id
            .parse()
            .map_err(|_| format!("not a poll id: {}", results.poll_id))?;
        self.take(poll, results.clone());
        Ok(())
    }
}

/// The `Authorization` field of an authorization object (`{"host", "Authorization"}`).
fn token_of(authorization: &Value) -> Option<&str> {
    authorization.get("Authorization").and_then(Value::as_str)
}

/// The connection's authorization, from its `header-<base64url JSON>` subprotocol.
fn connect_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let protocols = headers.get("sec-websocket-protocol")?.to_str().ok()?;
    let mut offered = protocols.split(',').map(str::trim);
    if !offered.clone().any(|p| p == PROTOCOL) {
        return None;
    }
    let header = offered.find_map(|p| p.strip_prefix("header-"))?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: Value = serde_json::from_slice(&json).ok()?;
    token_of(&value).map(str::to_owned)
}

async fn upgrade(State(hub): State<LiveHub>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let Some(token) = connect_token(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            "offer the aws-appsync-event-ws subprotocol and a header-<authorization> one",
        )
            .into_response();
    };
    if !hub.decide(&token, "EVENT_CONNECT", None) {
        return (StatusCode::UNAUTHORIZED, "the pass is not valid").into_response();
    }
    let stats = &hub.inner.stats;
    if stats.connections.fetch_add(1, Ordering::SeqCst) >= hub.inner.limits.connections {
        stats.connections.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    }
    ws.protocols([PROTOCOL])
        .on_upgrade(move |socket| async move {
            connection(hub.clone(), socket).await;
            hub.inner.stats.connections.fetch_sub(1, Ordering::SeqCst);
        })
}

/// Messages written to one socket: the replies, keep-alives and every subscription's data.
/// Bounded, so a socket that does not drain holds back only its own subscriptions' tasks.
const OUTBOX: usize = 64;

async fn connection(hub: LiveHub, socket: WebSocket) {
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::channel::<String>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(text) = outbox.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let limits = hub.inner.limits;
    let mut subscriptions: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut keep_alive = tokio::time::interval(limits.keep_alive);
    keep_alive.tick().await;
    let mut idle_since = Some(Instant::now());
    loop {
        let idle_deadline = idle_since.map(|t| t + limits.idle);
        let message = tokio::select! {
            message = stream.next() => message,
            _ = keep_alive.tick() => {
                if out.send(json!({ "type": "ka" }).to_string()).await.is_err() {
                    break;
                }
                continue;
            }
            () = sleep_until_some(idle_deadline) => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
        };
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            let _ = out.send(error("BadRequestException", "not JSON")).await;
            continue;
        };
        let id = message
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let reply = match message.get("type").and_then(Value::as_str) {
            Some("connection_init") => json!({
                "type": "connection_ack",
                "connectionTimeoutMs": limits.keep_alive.as_millis() * 5,
            }),
            Some("subscribe") => {
                let channel = message
                    .get("channel")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let token = message
                    .get("authorization")
                    .and_then(token_of)
                    .unwrap_or_default();
                let poll = channel
                    .strip_prefix(&format!("/{}/", tally::live::NAMESPACE))
                    .and_then(|p| p.parse::<PollId>().ok());
                match poll {
                    _ if id.is_empty() || subscriptions.contains_key(&id) => subscribe_error(
                        &id,
                        "BadRequestException",
                        "a subscription needs an id of its own",
                    ),
                    _ if subscriptions.len() >= limits.subscriptions_per_connection => {
                        subscribe_error(
                            &id,
                            "MaxSubscriptionsReachedException",
                            "too many subscriptions on this connection",
                        )
                    }
                    Some(poll) if hub.decide(token, "EVENT_SUBSCRIBE", Some(channel)) => {
                        let task = tokio::spawn(forward(
                            hub.subscribe(poll),
                            id.clone(),
                            out.clone(),
                            hub.clone(),
                        ));
                        subscriptions.insert(id.clone(), task);
                        idle_since = None;
                        json!({ "type": "subscribe_success", "id": id })
                    }
                    _ => subscribe_error(
                        &id,
                        "UnauthorizedException",
                        "the pass does not open this channel",
                    ),
                }
            }
            Some("unsubscribe") => match subscriptions.remove(&id) {
                Some(task) => {
                    task.abort();
                    if subscriptions.is_empty() {
                        idle_since = Some(Instant::now());
                    }
                    json!({ "type": "unsubscribe_success", "id": id })
                }
                None => json!({
                    "type": "unsubscribe_error",
                    "id": id,
                    "errors": [{ "errorType": "UnknownOperationError", "message": "no such subscription" }],
                }),
            },
            Some("publish") => json!({
                "type": "publish_error",
                "id": id,
                "errors": [{ "errorType": "UnauthorizedException", "message": "only the count function publishes" }],
            }),
            _ => serde_json::from_str(&error("UnsupportedOperation", "unknown message type"))
                .unwrap_or(Value::Null),
        };
        if out.send(reply.to_string()).await.is_err() {
            break;
        }
    }
    for (_, task) in subscriptions {
        task.abort();
    }
    drop(out);
    let _ = writer.await;
}

/// One subscription: the poll's newest value each time it changes, as a `data` message.
async fn forward(
    mut rx: watch::Receiver<Option<Arc<str>>>,
    id: String,
    out: mpsc::Sender<String>,
    hub: LiveHub,
) {
    while rx.changed().await.is_ok() {
        let Some(event) = rx.borrow_and_update().clone() else {
            continue;
        };
        let data = json!({ "type": "data", "id": id, "event": &*event }).to_string();
        if out.send(data).await.is_err() {
            return;
        }
        hub.inner.stats.deliveries.fetch_add(1, Ordering::Relaxed);
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn subscribe_error(id: &str, kind: &str, message: &str) -> Value {
    json!({
        "type": "subscribe_error",
        "id": id,
        "errors": [{ "errorType": kind, "message": message }],
    })
}

fn error(kind: &str, message: &str) -> String {
    json!({ "type": "error", "errors": [{ "errorType": kind, "message": message }] }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally::clock::SystemClock;
    use tally::domain::Tally;

    fn results(poll: PollId, total: u64) -> LiveResults {
        LiveResults::new(
            poll,
            &Tally {
                ballots: total,
                ..Tally::default()
            },
        )
    }

    /// Serves `hub` on a loopback port; returns the WebSocket URL and host.
    async fn serve(hub: &LiveHub) -> (String, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let host = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let app = hub.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("ws://{host}{PATH}"), host)
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_connections_are_bounded() {
        let key = LiveKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let limits = LiveLimits {
            idle: Duration::from_millis(300),
            connections: 1,
            ..LiveLimits::default()
        };
        let hub = LiveHub::new(key.clone(), Arc::new(SystemClock), limits);
        let (url, host) = serve(&hub).await;
        let poll = PollId::new();
        let pass = key.pass(
            poll,
            tally::clock::Clock::now(&SystemClock) + tally::live::PASS_LIFETIME,
        );
        let mut idle = crate::watcher::Watcher::connect(&url, &host, &pass)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The hub holds one connection: a second is refused while the first is open.
        let refused = crate::watcher::Watcher::connect(&url, &host, &pass).await;
        assert_eq!(
            refused.err().as_deref(),
            Some("HTTP 503 Service Unavailable")
        );
        // With no subscription, the first is closed once it has been idle long enough...
        let closed = idle.next_message(Duration::from_secs(5)).await;
        assert_eq!(closed.err().as_deref(), Some("closed"));
        // ...which frees its place.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = crate::watcher::Watcher::connect(&url, &host, &pass)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // A subscription keeps a connection open past the idle time.
        let reply = again
            .subscribe("s", &tally::live::channel(poll), &host, &pass)
            .await;
        assert_eq!(reply["type"], "subscribe_success", "{reply}");
        let quiet = again.next_message(Duration::from_millis(900)).await;
        assert_eq!(quiet.err().as_deref(), Some("nothing arrived in time"));
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_are_paced_to_one_a_second_and_the_newest_always_arrives() {
        let key = LiveKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let hub = LiveHub::new(key, Arc::new(SystemClock), LiveLimits::default());
        let poll = PollId::new();
        let mut rx = hub.subscribe(poll);
        // The watcher reads as values arrive, beside the publisher.
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(3), rx.changed()).await
            {
                let value = rx
                    .borrow_and_update()
                    .clone()
                    .unwrap_or_else(|| Arc::from(""));
                let parsed: LiveResults =
                    serde_json::from_str(&value).unwrap_or_else(|e| panic!("{e}: {value}"));
                seen.push((parsed.total, Instant::now()));
            }
            seen
        });
        let start = Instant::now();
        // Fifty batches within half a second, and one late, older publish.
        for total in 1..=50 {
            hub.take(poll, results(poll, total));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hub.take(poll, results(poll, 7));
        let seen = reader.await.unwrap_or_default();
        let totals: Vec<u64> = seen.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            totals,
            [1, 50],
            "the first at once, the newest at the end of the second"
        );
        assert!(
            seen[0].1 - start < Duration::from_millis(10),
            "the first at once"
        );
        assert!(
            seen[1].1 - start >= Duration::from_secs(1),
            "the next a second later"
        );
        assert_eq!(hub.stats().publishes.load(Ordering::Relaxed), 2);
    }
}
