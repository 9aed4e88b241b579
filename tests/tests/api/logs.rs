//! What the logs may hold: every request is logged, but never a credential that a path
//! carries.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tally_tests::TestApp;

/// Log output kept in memory, to be read back by the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A guest's invite token is the whole credential for their ballot, and it travels in the
/// path of the guest page and of the invite API. The request log names the route instead.
/// The runtime has one thread, so every log line of the request reaches this test's logger.
#[tokio::test(flavor = "current_thread")]
async fn invite_tokens_in_paths_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let logger = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(logger);

    let app = TestApp::start().await;
    let token = "tok3n-that-must-stay-secret-0123456789abcdefghij";
    app.get(&format!("/v1/invites/{token}")).send().await;
    app.get(&format!("/i/{token}")).send().await;
    app.get(&format!("/v1/invites/{token}/extra")).send().await;

    let logs = String::from_utf8(captured.0.lock().map(|b| b.clone()).unwrap_or_default())
        .unwrap_or_default();
    let requests: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(r#""message":"request""#))
        .collect();
    assert_eq!(requests.len(), 3, "one line per request:\n{logs}");
    assert!(
        requests.iter().any(|l| l.contains("/v1/invites/{token}")),
        "the route is logged:\n{logs}"
    );
    assert!(!logs.contains(token), "the token was logged:\n{logs}");
}
