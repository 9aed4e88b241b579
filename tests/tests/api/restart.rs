//! The dev server's data lives on disk: accounts, keys, polls and ballots survive a restart.

use serde_json::json;
use tally_dev::Storage;
use tally_tests::{PASSWORD, TestApp};

#[tokio::test]
async fn data_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().to_str().unwrap_or_default().to_owned();
    let vars = [("TALLY_DATA_DIR", path.as_str())];
    let storage = || Storage::Dir(dir.path().to_owned());

    let first = TestApp::start_with(&vars, storage()).await;
    let ann = first.sign_up("ann@example.com").await;
    let poll = first.lunch_poll(&ann.access_token).await;
    first
        .vote(&ann.access_token, &poll, &["o2"])
        .await
        .expect(201);
    first.stack.shutdown().await;

    let second = TestApp::start_with(&vars, storage()).await;
    // The access token minted before the restart still verifies: the key pair was kept.
    second
        .vote(&ann.access_token, &poll, &["o1"])
        .await
        .expect_problem(409, "already-voted");
    let results = second
        .settled_results(&ann.access_token, &poll)
        .await
        .expect(200);
    assert_eq!(results.body["total"], 1);
    assert_eq!(results.body["options"][1]["votes"], 1);
    second.login("ann@example.com", PASSWORD).await.expect(200);
    second
        .post("/v1/auth/register")
        .json(json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect_problem(409, "email-taken");
}

#[tokio::test]
async fn the_access_token_lifetime_comes_from_configuration() {
    let app = TestApp::start_with(&[("TALLY_ACCESS_TOKEN_TTL", "120")], Storage::Memory).await;
    app.post("/v1/auth/register")
        .json(json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect(201);
    let tokens = app.login("ann@example.com", PASSWORD).await.expect(200);
    assert_eq!(tokens.body["expires_in"], 120);
    let token = tokens.body["access_token"].as_str().unwrap_or_default();
    let payload = token.split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        120
    );
    for claim in ["sub", "iss", "aud", "exp", "iat", "jti"] {
        assert!(!claims[claim].is_null(), "missing {claim}: {claims}");
    }
}
