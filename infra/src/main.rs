//! The dev server: every function's routes on one port, over an embedded DynamoDB-compatible
//! engine whose data lives under `TALLY_DATA_DIR` and survives restarts.

use std::net::SocketAddr;
use std::sync::Arc;

use tally::clock::SystemClock;
use tally::config::Config;
use tally_dev::{Stack, StackOptions, Storage};

#[tokio::main]
async fn main() {
    // mimalloc (linked by `tally_alloc`) with its purge delay set: see that crate.
    tally_alloc::tune();
    if let Err(e) = run().await {
        eprintln!("tally-dev: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    init_logging();
    let mut config = Config::from_env().map_err(|e| e.to_string())?;
    let listen = address("TALLY_LISTEN", "127.0.0.1:3000")?;
    let mut options = StackOptions::local(Arc::new(SystemClock));
    options.dynamo_addr = address("TALLY_DYNAMODB_LISTEN", "127.0.0.1:8000")?;
    options.s3_addr = address("TALLY_S3_LISTEN", "127.0.0.1:9090")?;
    options.queue.visibility_timeout = std::time::Duration::from_secs(5);
    options.queue.max_receives = config.render_max_receives;
    // Guests' QR codes must open this server unless another public origin is configured.
    if std::env::var("TALLY_PUBLIC_BASE_URL").is_err() {
        config.public_base_url = format!("http://{listen}");
        // Live results are served on the same origin, so they follow it.
        if std::env::var("TALLY_LIVE_REALTIME_URL").is_err() {
            config.live_realtime_url = format!("ws://{listen}{}", tally_dev::live::PATH);
        }
        if std::env::var("TALLY_LIVE_HOST").is_err() {
            config.live_host = listen.to_string();
        }
    }
    // An external emulator (moto, say) replaces the embedded engines when named.
    let storage = match std::env::var("TALLY_AWS_ENDPOINT") {
        Ok(endpoint) => Storage::Endpoint(endpoint),
        Err(_) => Storage::Dir(config.data_dir.clone()),
    };
    let stack = Stack::start(&config, storage, options).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("TALLY_LISTEN: cannot listen on {listen}: {e}"))?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    eprintln!(
        "tally-dev: serving the API on {url} (data in {})",
        config.data_dir.display()
    );
    if let Some(s3) = &stack.s3 {
        eprintln!(
            "tally-dev: S3 engine for other processes at {}",
            s3.endpoint
        );
    }
    if let Some(url) = &stack.sqs_url {
        eprintln!(
            "tally-dev: render queue at {url} (TALLY_RENDER_QUEUE_URL for the jobs and polls functions)"
        );
    }
    if let Some(dynamo) = &stack.dynamo {
        eprintln!(
            "tally-dev: DynamoDB engine for other processes at {}",
            dynamo.endpoint
        );
    }
    // The peer address is the client IP that the auth routes' rate limits count by.
    axum::serve(
        listener,
        stack
            .app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())
}

fn address(var: &str, default: &str) -> Result<SocketAddr, String> {
    let raw = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    raw.parse()
        .map_err(|_| format!("{var}: {raw:?} is not an address such as {default}"))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,dynoxide=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
