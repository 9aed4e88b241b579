//! A live-results watcher for tests and the bench: the client side of the AppSync Events
//! WebSocket protocol, as the pages speak it (`watchResults` in `shared/assets/common.js`),
//! over a real socket to a served stack.

use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tally::live::LiveResults;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One watcher's connection.
#[derive(Debug)]
pub struct Watcher {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// The `header-…` subprotocol: the authorization object, base64url-encoded.
pub fn header_protocol(host: &str, pass: &str) -> String {
    let auth = json!({ "host": host, "Authorization": pass }).to_string();
    format!(
        "header-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(auth)
    )
}

impl Watcher {
    /// Opens `url` with `pass` and waits for `connection_ack`. An `Err` carries the HTTP
    /// status of a refused upgrade, or what went wrong.
    pub async fn connect(url: &str, host: &str, pass: &str) -> Result<Self, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        let protocols = format!("aws-appsync-event-ws, {}", header_protocol(host, pass));
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.parse().map_err(|_| "bad protocol header")?,
        );
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) => format!("HTTP {}", r.status()),
                e => e.to_string(),
            })?;
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        if chosen != Some("aws-appsync-event-ws") {
            return Err(format!("the server chose the subprotocol {chosen:?}"));
        }
        let mut watcher = Self { socket };
        watcher.send(json!({ "type": "connection_init" })).await?;
        let ack = watcher.next_message(Duration::from_secs(5)).await?;
        if ack["type"] != "connection_ack" {
            return Err(format!("no connection_ack: {ack}"));
        }
        Ok(watcher)
    }

    pub async fn send(&mut self, message: Value) -> Result<(), String> {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Subscribes `id` to `channel` with `pass` and returns the server's answer
    /// (`subscribe_success` or `subscribe_error`).
    pub async fn subscribe(&mut self, id: &str, channel: &str, host: &str, pass: &str) -> Value {
        let message = json!({
            "type": "subscribe",
            "id": id,
            "channel": channel,
            "authorization": { "host": host, "Authorization": pass },
        });
        if let Err(e) = self.send(message).await {
            return json!({ "type": "send failed", "error": e });
        }
        loop {
            match self.next_message(Duration::from_secs(5)).await {
                Ok(reply) if reply["id"] == id && reply["type"] != "data" => return reply,
                Ok(_) => {}
                Err(e) => return json!({ "type": "no answer", "error": e }),
            }
        }
    }

    /// The next protocol message other than a keep-alive, within `patience`.
    pub async fn next_message(&mut self, patience: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| "nothing arrived in time".to_owned())?;
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
            };
            let value: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            if value["type"] != "ka" {
                return Ok(value);
            }
        }
    }

    /// The next published results, within `patience`.
    pub async fn next_results(&mut self, patience: Duration) -> Result<LiveResults, String> {
        loop {
            let message = self.next_message(patience).await?;
            if message["type"] == "data" {
                let event = message["event"].as_str().unwrap_or_default();
                return serde_json::from_str(event).map_err(|e| format!("{e}: {event}"));
            }
        }
    }

    /// Reads published results until one counts `total` ballots (or more), within `patience`.
    pub async fn results_with_total(
        &mut self,
        total: u64,
        patience: Duration,
    ) -> Result<LiveResults, String> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let results = self.next_results(left).await?;
            if results.total >= total {
                return Ok(results);
            }
        }
    }
}
