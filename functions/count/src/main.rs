//! The count Lambda function (DynamoDB stream, tumbling window): adds each batch of new
//! ballots to their polls' tallies, exactly once.

use std::sync::Arc;

use tally::clock::SystemClock;
use tally::count::Counter;
use tally::lambda::{Env, Error, run_stream};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("count")?;
    let aws = env.aws().await;
    let store = aws.dynamo().await;
    // Each batch's new results go to the poll's live watchers, through AppSync.
    let feed = Arc::new(aws.live_feed()?);
    let counter = Counter::new(store, Arc::new(SystemClock), feed);
    run_stream(|event| counter.handle(event)).await
}
