//! The count function's [`ResultsFeed`] on AWS: one HTTP publish to the AppSync Events API per
//! poll per batch, signed with the function's IAM role (SigV4, service `appsync`). AppSync fans
//! it out to every subscriber of the poll's channel, so the function's cost does not grow with
//! the number of watchers.
//!
//! A publish gets two seconds; a slow or failed one is logged by the caller and dropped, never
//! retried: the next batch publishes newer counts anyway, and pages read the results when
//! their socket is down.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{LiveResults, channel};
use crate::domain::PollId;
use crate::ports::ResultsFeed;

/// How long one publish may take before it is given up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Publishes to `TALLY_LIVE_PUBLISH_URL` (`https://<id>.appsync-api.<region>.amazonaws.com/event`).
#[derive(Debug, Clone)]
pub struct AppSyncFeed {
    url: String,
    host: String,
    region: String,
    credentials: SharedCredentialsProvider,
    client: Client<Https, Full<Bytes>>,
}

impl AppSyncFeed {
    pub fn new(sdk: &aws_config::SdkConfig, url: &str) -> Result<Self, String> {
        let credentials = sdk
            .credentials_provider()
            .ok_or("the SDK configuration has no credentials provider")?;
        let region = sdk
            .region()
            .ok_or("the SDK configuration has no region")?
            .to_string();
        let host = url
            .strip_prefix("https://")
            .and_then(|rest| rest.split('/').next())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("TALLY_LIVE_PUBLISH_URL is not an https URL: {url}"))?
            .to_owned();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("the system's root certificates: {e}"))?
            .https_only()
            .enable_http1()
            .build();
        Ok(Self {
            url: url.to_owned(),
            host,
            region,
            credentials,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The signed request publishing `results`.
    async fn request(&self, results: &LiveResults) -> Result<http::Request<Full<Bytes>>, String> {
        let poll: PollId = results
            .poll_id
            .parse()
            .map_err(|_| format!("not a poll id: {}", results.poll_id))?;
        let event = serde_json::to_string(results).map_err(|e| e.to_string())?;
        let body = json!({ "channel": channel(poll), "events": [event] }).to_string();
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("credentials: {e}"))?;
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("appsync")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let headers = [
            ("host", self.host.as_str()),
            ("content-type", "application/json"),
        ];
        let signable = SignableRequest::new(
            "POST",
            &self.url,
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&self.url)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

#[async_trait]
impl ResultsFeed for AppSyncFeed {
    async fn publish(&self, results: &LiveResults) -> Result<(), String> {
        let request = self.request(results).await?;
        let response = tokio::time::timeout(PUBLISH_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "the publish timed out".to_owned())?
            .map_err(|e| format!("the publish failed: {e}"))?;
        let status = response.status();
        let body = tokio::time::timeout(PUBLISH_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| "the publish's answer timed out".to_owned())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "the Events API answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        // A 200 may still list events it refused (`failed`).
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match answer.get("failed").and_then(Value::as_array) {
            Some(failed) if !failed.is_empty() => Err(format!("the event was refused: {answer}")),
            _ => Ok(()),
        }
    }
}
