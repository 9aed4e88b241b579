//! Access-token attacks: every forged, stale or misdirected token gets 401.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tally::auth::KeyMaterial;
use tally_tests::TestApp;

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Swaps the payload of a signed token for another, keeping header and signature.
fn with_payload(token: &str, payload: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(payload), parts[2])
}

/// Changes one character in the middle of the signature (the last one may only carry
/// padding bits, so changing it can leave the decoded signature intact).
fn tamper_signature(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn forged_and_misdirected_tokens_are_refused() {
    let app = TestApp::start().await;
    let ann = app.sign_up("ann@example.com").await;
    let keys = &app.stack.keys;
    let now = app.now();
    let (iss, aud) = (app.config.issuer.as_str(), app.config.audience.as_str());
    let user: tally::domain::UserId = ann.user_id.parse().unwrap_or_default();
    let claims = json!({
        "sub": ann.user_id, "iss": iss, "aud": aud,
        "exp": now.unix_timestamp() + 600, "iat": now.unix_timestamp(), "jti": "x",
    });
    let other_keys = KeyMaterial::generate().unwrap_or_else(|e| panic!("{e}"));
    let mint = |keys: &KeyMaterial, iss: &str, aud: &str, ttl: i64, at: time::OffsetDateTime| {
        app.issuer_with(keys, iss, aud, ttl)
            .issue(user, at)
            .unwrap_or_default()
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(keys.public_pem.as_bytes()),
    )
    .unwrap_or_default();

    let cases: Vec<(&str, String)> = vec![
        ("no token", String::new()),
        ("garbage", "not.a.jwt".into()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({ "alg": "none", "typ": "JWT" })),
                b64(&claims)
            ),
        ),
        ("HS256 keyed with the public key", hs256),
        (
            "tampered payload (another user)",
            with_payload(
                &ann.access_token,
                &json!({ "sub": tally::domain::UserId::new().to_string(), "iss": iss, "aud": aud, "exp": now.unix_timestamp() + 600, "iat": 0, "jti": "y" }),
            ),
        ),
        ("tampered signature", tamper_signature(&ann.access_token)),
        (
            "expired an hour ago",
            mint(keys, iss, aud, 900, now - time::Duration::hours(2)),
        ),
        (
            "expired 30 s ago (beyond the 5 s leeway)",
            mint(keys, iss, aud, 60, now - time::Duration::seconds(90)),
        ),
        ("wrong audience", mint(keys, iss, "someone-else", 900, now)),
        ("wrong issuer", mint(keys, "evil", aud, 900, now)),
        (
            "signed with another key",
            mint(&other_keys, iss, aud, 900, now),
        ),
    ];
    for (name, token) in &cases {
        let reply = app.get("/v1/me").bearer(token).send().await;
        assert_eq!(
            reply.status.as_u16(),
            401,
            "{name} was accepted: {reply:#?}"
        );
        reply.expect_problem(401, "unauthorized");
    }
    // The control: the genuine token and one just inside the leeway work.
    app.get("/v1/me")
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    let barely = mint(keys, iss, aud, 60, now - time::Duration::seconds(62));
    app.get("/v1/me").bearer(&barely).send().await.expect(200);
}

#[tokio::test]
async fn other_schemes_are_refused() {
    let app = TestApp::start().await;
    let ann = app.sign_up("ann@example.com").await;
    for value in [
        format!("Basic {}", ann.access_token),
        ann.access_token.clone(),
        "Bearer".into(),
    ] {
        app.get("/v1/me")
            .header("authorization", &value)
            .send()
            .await
            .expect_problem(401, "unauthorized");
    }
    app.get("/v1/me")
        .header("authorization", &format!("bearer {}", ann.access_token))
        .send()
        .await
        .expect(200);
}
