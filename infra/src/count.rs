//! The count function wired to the table's stream, as the template's event source mapping
//! wires it on AWS: the poller of `streams.rs` hands each batch to [`Counter::handle`], the
//! handler `functions/count` runs on Lambda.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::{TimeWindowEvent, TimeWindowEventResponse};
use tally::clock::SharedClock;
use tally::config::Config;
use tally::count::Counter;
use tally::dynamo::DynamoStore;
use tally::ports::ResultsFeed;

use crate::streams::{StreamOptions, StreamPoller, StreamTarget, local_streams_client};

#[async_trait]
impl StreamTarget for Counter {
    async fn invoke(&self, event: TimeWindowEvent) -> Result<TimeWindowEventResponse, String> {
        self.handle(event).await.map_err(|e| e.to_string())
    }
}

/// Starts reading the stream of `config.table` at `endpoint` into the count function over
/// `store` (a store handle of its own, as a separate function has on AWS), publishing new
/// results to `feed`.
pub async fn start(
    endpoint: &str,
    store: DynamoStore,
    config: &Config,
    clock: SharedClock,
    feed: Arc<dyn ResultsFeed>,
    options: StreamOptions,
) -> Result<StreamPoller, String> {
    let counter: Arc<dyn StreamTarget> = Arc::new(Counter::new(Arc::new(store), clock, feed));
    StreamPoller::start(
        local_streams_client(endpoint),
        &config.table,
        counter,
        options,
    )
    .await
}
