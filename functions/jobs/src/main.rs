//! The jobs Lambda function: starts render jobs, reports their progress, signs downloads.

use std::sync::Arc;

use tally::http::jobs::{JobsState, routes};
use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("jobs")?;
    let aws = env.aws().await;
    let store = aws.dynamo().await;
    let (blobs, queue) = (Arc::new(aws.blobs()), Arc::new(aws.render_queue()?));
    // Read once, at cold start, from Secrets Manager: the table holds only token hashes.
    let invite_key = aws.invite_key().await?;
    let state = JobsState::new(
        store.clone(),
        invite_key,
        blobs,
        queue,
        env.gate(store)?,
        env.config.render_guests_per_day,
        env.config.render_jobs_in_flight,
    );
    run_http(&env, routes(state)).await
}
