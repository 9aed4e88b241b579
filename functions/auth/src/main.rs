//! The auth Lambda function: accounts and sessions. It alone holds the signing key.

use tally::http::auth::{AuthState, routes};
use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("auth")?;
    let aws = env.aws().await;
    let store = aws.dynamo().await;
    let ttl = env.config.refresh_token_ttl;
    // The private key comes from Secrets Manager, read once here at cold start.
    let issuer = aws.signing_issuer().await?;
    let state = AuthState::new(store.clone(), issuer, ttl, env.gate(store)?);
    run_http(&env, routes(state)).await
}
