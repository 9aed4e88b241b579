//! The render Lambda function (SQS-triggered): invite cards, share QR codes, charts, ZIPs.

use std::sync::Arc;

use tally::clock::SystemClock;
use tally::lambda::{Env, Error, run_sqs};
use tally::worker::Worker;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("render")?;
    let aws = env.aws().await;
    let worker = Worker {
        store: aws.dynamo().await,
        blobs: Arc::new(aws.blobs()),
        dead_letters: Arc::new(aws.dead_letters()?),
        clock: Arc::new(SystemClock),
        public_base_url: env.config.public_base_url.clone(),
        // Read once, at cold start, from Secrets Manager: cards print tokens derived from it.
        invite_key: aws.invite_key().await?,
        max_receives: env.config.render_max_receives,
        metrics: env.config.metrics,
    };
    run_sqs(|batch, deadline| worker.handle_within(batch, Some(deadline))).await
}
