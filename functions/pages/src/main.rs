//! The pages Lambda function. Everything but start-up lives in the `tally` library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tally::lambda::run(tally::Function::Pages).await
}
