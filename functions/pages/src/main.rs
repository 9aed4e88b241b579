//! The pages Lambda function: the web pages and the API's documentation, static files only
//! (no storage, no keys, no AWS client).

use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("pages")?;
    run_http(&env, tally::http::pages::routes()).await
}
