//! The count Lambda function (DynamoDB stream, tumbling window): adds each batch of new
//! ballots to their polls' tallies, exactly once.

use std::sync::Arc;

use tally::clock::SystemClock;
use tally::count::Counter;
use tally::lambda::{Env, Error, run_stream};
use tally::live::Paced;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("count")?;
    let aws = env.aws().await;
    let store = aws.dynamo().await;
    // Each batch's new results go to the poll's live watchers, through AppSync, at most once
    // a second per poll across every shard's instance (the lease on the poll's tally).
    let clock = Arc::new(SystemClock);
    let feed = Paced::new(Arc::new(aws.live_feed()?), store.clone(), clock.clone());
    let counter = Counter::new(store, clock, Arc::new(feed));
    run_stream(|event| counter.handle(event)).await
}
