//! What a live-results publish carries: a poll's counts as a batch of the count function left
//! them (`live/` publishes it; the pages and the `Watcher` read it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{PollId, Tally};

/// One publish: a poll's counts as a batch left them. Publishes of one poll can arrive out of
/// order (two shards' batches, a retry), so a watcher keeps the one with the larger `total`,
/// which only grows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveResults {
    pub poll_id: String,
    pub total: u64,
    /// Votes per option id (the page knows the options' texts).
    pub votes: BTreeMap<String, u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub counted_through: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub counted_at: Option<OffsetDateTime>,
}

impl LiveResults {
    pub fn new(poll: PollId, tally: &Tally) -> Self {
        Self {
            poll_id: poll.to_string(),
            total: tally.ballots,
            votes: tally
                .per_option
                .iter()
                .map(|(o, n)| (o.as_str().to_owned(), *n))
                .collect(),
            counted_through: tally.counted_through,
            counted_at: tally.counted_at,
        }
    }
}
