//! Accounts and sessions.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use tally_tests::{PASSWORD, Storage, TestApp};

async fn register_normalises_the_email_and_refuses_a_second_account(app: TestApp) {
    let user = app
        .post("/v1/auth/register")
        .json(json!({ "email": "  Ann@Example.COM ", "password": PASSWORD }))
        .send()
        .await
        .expect(201);
    assert_eq!(user.body["email"], "ann@example.com");
    assert!(user.body["id"].is_string() && user.body["created_at"].is_string());
    assert!(user.body.get("password").is_none() && user.body.get("password_hash").is_none());
    app.post("/v1/auth/register")
        .json(json!({ "email": "ann@example.com", "password": "another password" }))
        .send()
        .await
        .expect_problem(409, "email-taken");
}

async fn login_then_me_shows_the_caller(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let me = app
        .get("/v1/me")
        .bearer(&ann.access_token)
        .send()
        .await
        .expect(200);
    assert_eq!(me.body["id"], ann.user_id.as_str());
    assert_eq!(me.body["email"], "ann@example.com");
    let tokens = app.login("ANN@example.com", PASSWORD).await.expect(200);
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert_eq!(tokens.body["expires_in"], 900);
}

async fn unknown_email_and_wrong_password_get_the_same_answer(app: TestApp) {
    app.sign_up("ann@example.com").await;
    let wrong = app
        .login("ann@example.com", "not the password")
        .await
        .expect_problem(401, "invalid-credentials");
    let unknown = app
        .login("bob@example.com", PASSWORD)
        .await
        .expect_problem(401, "invalid-credentials");
    let malformed = app
        .login("not an email", PASSWORD)
        .await
        .expect_problem(401, "invalid-credentials");
    for reply in [&unknown, &malformed] {
        assert_eq!(reply.body["detail"], wrong.body["detail"]);
        assert_eq!(reply.body["title"], wrong.body["title"]);
    }
}

async fn a_password_is_never_truncated(app: TestApp) {
    let long = "p".repeat(127);
    app.post("/v1/auth/register")
        .json(json!({ "email": "ann@example.com", "password": format!("{long}1") }))
        .send()
        .await
        .expect(201);
    app.login("ann@example.com", &format!("{long}2"))
        .await
        .expect(401);
    app.login("ann@example.com", &format!("{long}1"))
        .await
        .expect(200);
}

async fn refresh_rotates_and_a_reused_token_ends_the_session_family(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    let refresh = |token: &str| {
        app.post("/v1/auth/refresh")
            .json(json!({ "refresh_token": token }))
            .send()
    };

    let second = refresh(&ann.refresh_token).await.expect(200);
    let second_token = second.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(second_token, ann.refresh_token);
    app.get("/v1/me")
        .bearer(second.body["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .expect(200);

    // The first token was spent: presenting it again is refused, and because that means it
    // was copied, the newer token of the same family stops working too.
    refresh(&ann.refresh_token)
        .await
        .expect_problem(401, "invalid-refresh-token");
    refresh(&second_token)
        .await
        .expect_problem(401, "invalid-refresh-token");

    // A fresh login starts a new family that works.
    let again = app.login("ann@example.com", PASSWORD).await.expect(200);
    refresh(again.body["refresh_token"].as_str().unwrap_or_default())
        .await
        .expect(200);
    refresh("made-up-token")
        .await
        .expect_problem(401, "invalid-refresh-token");
}

/// The same token refreshed twice at once is reuse, however close together: at most one
/// request gets a pair, and the family is revoked, so even the winner's new token is dead.
/// Before, the loser's cancelled rotation was a plain 401 and the winner's token lived on.
async fn two_concurrent_refreshes_with_one_token_revoke_the_family(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    for round in 0..5 {
        let session = app.login("ann@example.com", PASSWORD).await.expect(200);
        let token = session.body["refresh_token"].as_str().unwrap_or_default();
        let body = json!({ "refresh_token": token });
        let (a, b) = tokio::join!(
            app.post("/v1/auth/refresh").json(body.clone()).send(),
            app.post("/v1/auth/refresh").json(body.clone()).send(),
        );
        let winners: Vec<_> = [a, b].into_iter().filter(|r| r.status == 200).collect();
        assert!(
            winners.len() <= 1,
            "round {round}: two pairs from one token"
        );
        for winner in winners {
            app.post("/v1/auth/refresh")
                .json(json!({ "refresh_token": winner.body["refresh_token"] }))
                .send()
                .await
                .expect_problem(401, "invalid-refresh-token");
        }
    }
    // Ann's first session is another family and was not touched.
    app.post("/v1/auth/refresh")
        .json(json!({ "refresh_token": ann.refresh_token }))
        .send()
        .await
        .expect(200);
}

fn refresh_token_of(reply: &tally_tests::Reply) -> String {
    reply.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn logout_ends_the_session_family_only(app: TestApp) {
    let phone = app.sign_up("ann@example.com").await;
    let laptop = app.login("ann@example.com", PASSWORD).await.expect(200);
    let refresh = |token: String| {
        app.post("/v1/auth/refresh")
            .json(json!({ "refresh_token": token }))
            .send()
    };
    // The phone rotates once, then signs out with its newest token: the whole family ends,
    // the older (spent) token and the newest alike.
    let rotated = refresh(phone.refresh_token.clone()).await.expect(200);
    app.post("/v1/auth/logout")
        .json(json!({ "refresh_token": refresh_token_of(&rotated) }))
        .send()
        .await
        .expect(204);
    refresh(refresh_token_of(&rotated))
        .await
        .expect_problem(401, "invalid-refresh-token");
    // Signing out again is not an error; an unknown token is.
    app.post("/v1/auth/logout")
        .json(json!({ "refresh_token": refresh_token_of(&rotated) }))
        .send()
        .await
        .expect(204);
    app.post("/v1/auth/logout")
        .json(json!({ "refresh_token": "made-up-token" }))
        .send()
        .await
        .expect_problem(401, "invalid-refresh-token");
    app.post("/v1/auth/logout")
        .json(json!({ "token": "x" }))
        .send()
        .await
        .expect(400);
    // The laptop's session is another family and goes on.
    refresh(refresh_token_of(&laptop)).await.expect(200);
}

async fn logout_all_ends_every_session_and_a_new_login_works(app: TestApp) {
    let phone = app.sign_up("ann@example.com").await;
    let laptop = app.login("ann@example.com", PASSWORD).await.expect(200);
    let bob = app.sign_up("bob@example.com").await;
    let refresh = |token: String| {
        app.post("/v1/auth/refresh")
            .json(json!({ "refresh_token": token }))
            .send()
    };
    let rotated = refresh(refresh_token_of(&laptop)).await.expect(200);
    app.post("/v1/auth/logout-all")
        .send()
        .await
        .expect_problem(401, "unauthorized");
    app.post("/v1/auth/logout-all")
        .bearer(&phone.access_token)
        .send()
        .await
        .expect(204);
    refresh(phone.refresh_token.clone())
        .await
        .expect_problem(401, "invalid-refresh-token");
    refresh(refresh_token_of(&rotated))
        .await
        .expect_problem(401, "invalid-refresh-token");
    // Another user is untouched; a login after the logout starts a family that works.
    refresh(bob.refresh_token.clone()).await.expect(200);
    app.clock.advance(time::Duration::seconds(1));
    let again = app.login("ann@example.com", PASSWORD).await.expect(200);
    refresh(refresh_token_of(&again)).await.expect(200);
}

async fn credential_responses_are_not_cached(app: TestApp) {
    let user = app
        .post("/v1/auth/register")
        .json(json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect(201);
    assert_eq!(user.header("cache-control"), Some("no-store"));
    let tokens = app.login("ann@example.com", PASSWORD).await.expect(200);
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    let refreshed = app
        .post("/v1/auth/refresh")
        .json(json!({ "refresh_token": tokens.body["refresh_token"] }))
        .send()
        .await
        .expect(200);
    assert_eq!(refreshed.header("cache-control"), Some("no-store"));
    let me = app
        .get("/v1/me")
        .bearer(tokens.body["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .expect(200);
    assert_eq!(me.header("cache-control"), Some("no-store"));
}

async fn auth_routes_refuse_an_idempotency_key(app: TestApp) {
    app.post("/v1/auth/register")
        .header("idempotency-key", "k1")
        .json(json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect_problem(400, "bad-parameter");
    app.sign_up("ann@example.com").await;
    app.post("/v1/auth/login")
        .header("idempotency-key", "k1")
        .json(json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect_problem(400, "bad-parameter");
}

async fn an_expired_refresh_token_is_refused(app: TestApp) {
    let ann = app.sign_up("ann@example.com").await;
    app.clock.advance(time::Duration::days(31));
    app.post("/v1/auth/refresh")
        .json(json!({ "refresh_token": ann.refresh_token }))
        .send()
        .await
        .expect_problem(401, "invalid-refresh-token");
}

/// A revoked family stays revoked for as long as its tokens can live, however long the
/// configured lifetime: the revocation is swept by TTL only after the last token expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_outlives_the_longest_refresh_token() {
    let year = 365 * 86_400;
    let app = TestApp::start_with(
        &[("TALLY_REFRESH_TOKEN_TTL", &year.to_string())],
        Storage::Memory,
    )
    .await;
    let ann = app.sign_up("ann@example.com").await;
    let refresh = |token: &str| {
        app.post("/v1/auth/refresh")
            .json(json!({ "refresh_token": token }))
            .send()
    };
    refresh(&ann.refresh_token).await.expect(200);
    refresh(&ann.refresh_token)
        .await
        .expect_problem(401, "invalid-refresh-token");
    let markers = app
        .store()
        .client()
        .scan()
        .table_name(app.store().table())
        .filter_expression("SK = :family")
        .expression_attribute_values(":family", AttributeValue::S("FAMILY".into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .items
        .unwrap_or_default();
    assert_eq!(markers.len(), 1, "{markers:?}");
    let swept_at = match markers[0].get("ttl") {
        Some(AttributeValue::N(n)) => n.parse::<i64>().unwrap_or(0),
        other => panic!("no TTL on the revocation: {other:?}"),
    };
    assert!(
        swept_at >= app.now().unix_timestamp() + year,
        "swept after {} days, tokens live {} days",
        (swept_at - app.now().unix_timestamp()) / 86_400,
        year / 86_400
    );
}

tally_tests::on_every_backend!(
    register_normalises_the_email_and_refuses_a_second_account,
    login_then_me_shows_the_caller,
    unknown_email_and_wrong_password_get_the_same_answer,
    a_password_is_never_truncated,
    refresh_rotates_and_a_reused_token_ends_the_session_family,
    two_concurrent_refreshes_with_one_token_revoke_the_family,
    an_expired_refresh_token_is_refused,
    logout_ends_the_session_family_only,
    logout_all_ends_every_session_and_a_new_login_works,
    credential_responses_are_not_cached,
    auth_routes_refuse_an_idempotency_key,
);
