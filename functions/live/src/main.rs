//! The live Lambda function: the AppSync Events API's authorizer. A watcher connects and
//! subscribes with a pass the votes function handed out; this checks it (its poll, its end,
//! the live key's MAC) and nothing else: no table, no network beyond the key's one read.

use tally::lambda::{Env, Error, run_authorizer};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("live")?;
    // Read once, at cold start, from Secrets Manager.
    let key = env.aws().await.live_key().await?;
    run_authorizer(key).await
}
