//! Live results: what the count function publishes when a batch changes a poll's tally, the
//! short-lived pass a watcher subscribes with, and the one rule that decides a subscription
//! (`authorizer.rs`), which the Lambda authorizer of the AppSync Events API runs on AWS and the
//! dev server's WebSocket runs locally.
//!
//! A poll's results go to one channel, `/results/<poll>`. Who may watch is decided when the
//! pass is handed out (`POST /v1/polls/{id}/live`, under the same `results` rule as reading the
//! results), and the pass names its poll and its end, under an HMAC of the live key (a key of
//! its own, outside the table, like the invite key). So nothing a watcher holds is the user's
//! access token, and a pass opens one poll's channel for a few minutes, nothing else.

#[cfg(feature = "appsync")]
pub mod appsync;
pub mod authorizer;

use std::path::Path;

use time::OffsetDateTime;

pub use crate::domain::LiveResults;
use crate::domain::PollId;
use crate::domain::secret::{SecretKey, base64_url};

/// The channel namespace of the Events API (`template.yaml`).
pub const NAMESPACE: &str = "results";

/// How long a pass opens a channel. A page asks for a new one each time it (re)connects; a
/// subscription made in time lasts as long as its connection.
pub const PASS_LIFETIME: time::Duration = time::Duration::minutes(10);

/// The channel a poll's results are published to.
pub fn channel(poll: PollId) -> String {
    format!("/{NAMESPACE}/{poll}")
}

/// A feed nobody watches: for the count function's own tests, which hand it deliveries and
/// read the tally, and for a stack that plays no live results.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

#[async_trait::async_trait]
impl crate::ports::ResultsFeed for Unwatched {
    async fn publish(&self, _: &LiveResults) -> Result<(), String> {
        Ok(())
    }
}

/// How often one poll's live results may be published at most.
pub const PUBLISH_PACE: time::Duration = time::Duration::seconds(1);
/// Claims one publish tries before giving up. A claim fails only while another publish of the
/// poll holds the lease (at most a pace) with an older total; when several instances wait for
/// the same lease, an older total may win it first, so the newest may need one round per
/// instance publishing the poll at once (one per stream shard: a few).
const CLAIM_ROUNDS: usize = 8;

/// A feed that publishes a poll at most once per [`PUBLISH_PACE`] across every count function
/// instance (one per stream shard), under the lease on the poll's tally item: a publish whose
/// claim finds the lease held by an older total waits for the lease to end and claims again,
/// so the newest counts always go out, at most a pace late; one that finds a newer total
/// claimed does nothing. Each claim is one conditional write.
#[derive(Debug, Clone)]
pub struct Paced {
    feed: std::sync::Arc<dyn crate::ports::ResultsFeed>,
    lease: std::sync::Arc<dyn crate::ports::PublishLease>,
    clock: crate::clock::SharedClock,
}

impl Paced {
    pub fn new(
        feed: std::sync::Arc<dyn crate::ports::ResultsFeed>,
        lease: std::sync::Arc<dyn crate::ports::PublishLease>,
        clock: crate::clock::SharedClock,
    ) -> Self {
        Self { feed, lease, clock }
    }
}

#[async_trait::async_trait]
impl crate::ports::ResultsFeed for Paced {
    async fn publish(&self, results: &LiveResults) -> Result<(), String> {
        use crate::ports::Lease;
        let poll: PollId = results
            .poll_id
            .parse()
            .map_err(|_| format!("not a poll id: {}", results.poll_id))?;
        for _ in 0..CLAIM_ROUNDS {
            let now = self.clock.now();
            let claim = self
                .lease
                .claim(poll, results.total, now, PUBLISH_PACE)
                .await
                .map_err(|e| e.to_string())?;
            match claim {
                Lease::Granted => return self.feed.publish(results).await,
                Lease::Superseded => return Ok(()),
                Lease::HeldUntil(until) => {
                    let wait = (until - now).clamp(time::Duration::ZERO, PUBLISH_PACE);
                    tokio::time::sleep(wait.unsigned_abs()).await;
                }
            }
        }
        Err("the publish lease stayed taken".into())
    }
}

/// The key live passes are signed with. On AWS it is read once at cold start from Secrets
/// Manager (`TALLY_LIVE_KEY_SECRET`) by the votes function (which hands passes out) and the
/// authorizer (which checks them); locally it is generated into the data folder.
#[derive(Clone, PartialEq, Eq)]
pub struct LiveKey(SecretKey);

const LIVE_KEY_FILE: &str = "live-hmac.key";
const WHAT: &str = "live key";
/// Marks a pass's format, and keeps its MACs apart from any other use of a key.
const PASS_PREFIX: &str = "tl1";

/// What a valid pass says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivePass {
    pub poll: PollId,
    pub expires_at: OffsetDateTime,
}

impl LiveKey {
    pub fn generate() -> Result<Self, String> {
        SecretKey::generate().map(Self)
    }

    pub fn from_text(text: &str) -> Result<Self, String> {
        SecretKey::from_text(text, WHAT).map(Self)
    }

    pub fn to_text(&self) -> String {
        self.0.to_text()
    }

    pub fn load_or_generate(dir: &Path) -> Result<Self, String> {
        SecretKey::load_or_generate(dir, LIVE_KEY_FILE, WHAT).map(Self)
    }

    /// A pass to `poll`'s channel until `expires_at`: `tl1.<poll>.<unix seconds>.<mac>`.
    pub fn pass(&self, poll: PollId, expires_at: OffsetDateTime) -> String {
        let body = format!("{PASS_PREFIX}.{poll}.{}", expires_at.unix_timestamp());
        let mac = base64_url(&self.0.mac(body.as_bytes()));
        format!("{body}.{mac}")
    }

    /// What `pass` says, if this key signed it and it has not ended at `now`.
    pub fn check(&self, pass: &str, now: OffsetDateTime) -> Option<LivePass> {
        use base64::Engine;
        let (body, mac) = pass.rsplit_once('.')?;
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(mac)
            .ok()?;
        if !self.0.verify(body.as_bytes(), &mac) {
            return None;
        }
        let mut parts = body.split('.');
        let (Some(PASS_PREFIX), Some(poll), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let poll: PollId = poll.parse().ok()?;
        let expires_at = OffsetDateTime::from_unix_timestamp(expires.parse().ok()?).ok()?;
        (now < expires_at).then_some(LivePass { poll, expires_at })
    }
}

impl std::fmt::Debug for LiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_opens_its_poll_until_it_ends_and_only_under_its_key() {
        let key = LiveKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let poll = PollId::new();
        let pass = key.pass(poll, now + PASS_LIFETIME);
        let seen = key.check(&pass, now).map(|p| p.poll);
        assert_eq!(seen, Some(poll));
        assert_eq!(key.check(&pass, now + PASS_LIFETIME), None, "ended");
        let other = LiveKey::generate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.check(&pass, now), None, "another key");
        // Changing the poll or the end breaks the MAC.
        let forged = pass.replacen(&poll.to_string(), &PollId::new().to_string(), 1);
        assert_eq!(key.check(&forged, now), None);
        let later = (now + PASS_LIFETIME * 100_i32).unix_timestamp().to_string();
        let stretched = pass.replacen(
            &(now + PASS_LIFETIME).unix_timestamp().to_string(),
            &later,
            1,
        );
        assert_eq!(key.check(&stretched, now + PASS_LIFETIME), None);
        assert_eq!(key.check("tl1.nonsense", now), None);
        assert_eq!(key.check("", now), None);
    }
}
