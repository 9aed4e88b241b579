//! Least privilege, checked against what the code does: every route of every function is driven
//! through its own router over its own store (as each Lambda function has its own role), the
//! render worker over a store of its own, and what each store touched (the `dynamodb:` action
//! and the partition-key prefix of every item, see `DynamoStore::touched`) is compared with the
//! grants of that function's role in `template.yaml`. Less than used would be a denied call on
//! AWS; more is a grant no code needs.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;
use tally::clock::SharedClock;
use tally::domain::{GuestId, PollId};
use tally::dynamo::DynamoStore;
use tally::worker::Worker;
use tally_dev::{Function, Functions, LocalDeadLetters, LocalQueue, QueueOptions};
use tally_tests::{PASSWORD, Storage, TestApp};
use tower::ServiceExt;

/// One statement of a role's policy, as far as DynamoDB goes.
#[derive(Debug, Default)]
struct Statement {
    sid: String,
    actions: Vec<String>,
    resource: String,
    leading_keys: Option<Vec<String>>,
}

/// What `template.yaml` says about one function: its routes and its DynamoDB statements.
#[derive(Debug, Default)]
struct Deployed {
    routes: BTreeSet<(String, String)>,
    statements: Vec<Statement>,
}

/// Reads each function's routes and DynamoDB statements from `template.yaml`, keyed by the
/// binary's name. A line parser, like `openapi.rs`'s `deployed_routes`: the template's layout
/// (a resource at two spaces, `Binary:`, `- Sid:`, `Action:` and `dynamodb:LeadingKeys:`
/// lists) is regular enough, and a change of layout fails the sanity checks below.
fn deployed() -> BTreeMap<String, Deployed> {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap_or_else(|e| panic!("template.yaml: {e}"));
    let mut functions: BTreeMap<String, Deployed> = BTreeMap::new();
    let mut current: Option<String> = None;
    // Which list the following `- item` lines belong to.
    #[derive(PartialEq)]
    enum List {
        None,
        Actions,
        LeadingKeys,
    }
    let mut list = List::None;
    let mut method = None;
    for raw in template.lines() {
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if indent <= 2 {
            current = None;
            list = List::None;
            continue;
        }
        if let Some(binary) = line.strip_prefix("Binary: ") {
            current = Some(binary.to_owned());
            functions.entry(binary.to_owned()).or_default();
            continue;
        }
        let Some(function) = current.as_ref().and_then(|f| functions.get_mut(f)) else {
            continue;
        };
        if let Some(item) = line.strip_prefix("- ").filter(|i| !i.contains(": ")) {
            match list {
                List::Actions => {
                    if let Some(s) = function.statements.last_mut() {
                        s.actions.push(item.to_owned());
                    }
                }
                List::LeadingKeys => {
                    if let Some(s) = function.statements.last_mut() {
                        s.leading_keys.get_or_insert_default().push(item.to_owned());
                    }
                }
                List::None => {}
            }
            continue;
        }
        list = List::None;
        if let Some(sid) = line.strip_prefix("- Sid: ") {
            function.statements.push(Statement {
                sid: sid.to_owned(),
                ..Statement::default()
            });
        } else if line == "Action:" {
            list = List::Actions;
        } else if line == "dynamodb:LeadingKeys:" {
            list = List::LeadingKeys;
        } else if let Some(resource) = line.strip_prefix("Resource: ") {
            if let Some(s) = function.statements.last_mut() {
                s.resource = resource.to_owned();
            }
        } else if let Some(m) = line.strip_prefix("Method: ") {
            method = Some(m.trim_matches('"').to_uppercase());
        } else if let (Some(path), Some(m)) = (line.strip_prefix("Path: "), method.take()) {
            function
                .routes
                .insert((m, path.trim_matches('"').to_owned()));
        }
    }
    // Only the DynamoDB statements on the table matter here; the count function's stream
    // reading is checked on its own (`the_count_function_reads_only_its_stream`).
    for function in functions.values_mut() {
        function.statements.retain(|s| {
            s.actions.iter().any(|a| a.starts_with("dynamodb:")) && s.resource != STREAM_RESOURCE
        });
    }
    functions
}

/// The table's stream, as the template names it in the count function's policy.
const STREAM_RESOURCE: &str = "!GetAtt Table.StreamArn";

/// The dev server's stream poller filters records with the pattern the template gives the
/// event source mapping, so what is counted locally is what AWS would deliver.
#[test]
fn the_local_stream_filter_is_the_templates() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap_or_else(|e| panic!("template.yaml: {e}"));
    let patterns: Vec<serde_json::Value> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- Pattern: "))
        .map(|p| {
            serde_json::from_str(p.trim_matches('\''))
                .unwrap_or_else(|e| panic!("pattern {p}: {e}"))
        })
        .collect();
    let local: serde_json::Value =
        serde_json::from_str(tally_dev::streams::BALLOT_FILTER).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(patterns, [local]);
}

/// The actions the event source mapping reads a DynamoDB stream with (Lambda's documented
/// set for DynamoDB triggers): granted to the count function on the stream only.
#[test]
fn the_count_function_reads_only_its_stream() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap_or_else(|e| panic!("template.yaml: {e}"));
    let grants = template
        .split("- Sid: ReadBallotStream")
        .nth(1)
        .and_then(|rest| rest.split("- Sid:").next())
        .unwrap_or_else(|| panic!("no ReadBallotStream statement"));
    let actions: Vec<&str> = grants
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- dynamodb:"))
        .collect();
    assert_eq!(
        actions,
        [
            "DescribeStream",
            "GetRecords",
            "GetShardIterator",
            "ListStreams"
        ]
    );
    assert!(
        grants.contains(&format!("Resource: {STREAM_RESOURCE}")),
        "{grants}"
    );
    assert_eq!(
        template.matches(STREAM_RESOURCE).count(),
        2,
        "the grant and the trigger"
    );
}

/// Whether a template path (`/v1/polls/{id}`) matches a request path, and how specifically
/// (its literal segments), as API Gateway picks the most specific route.
fn matches(template: &str, path: &str) -> Option<usize> {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    if t.len() != p.len() {
        return None;
    }
    let mut literal = 0;
    for (t, p) in t.iter().zip(&p) {
        if t.starts_with('{') {
            if p.is_empty() {
                return None;
            }
        } else if t == p {
            literal += 1;
        } else {
            return None;
        }
    }
    Some(literal)
}

/// (function, method, route) of a request API Gateway would send there.
type Reached = BTreeSet<(&'static str, String, String)>;

/// Each function's own router over its own store, and the routes requests reached.
struct PerFunction {
    stores: BTreeMap<&'static str, DynamoStore>,
    worker: DynamoStore,
    reached: Arc<Mutex<Reached>>,
}

/// Replaces the app's router with one that routes as API Gateway does, by `template.yaml`, to
/// each function's own router, built over a store of its own (same engine and table).
async fn per_function(app: &mut TestApp, deployed: &BTreeMap<String, Deployed>) -> PerFunction {
    let new_store = || DynamoStore::new(app.store().client().clone(), app.config.table.clone());
    let clock: SharedClock = Arc::new(app.clock.clone());
    let worker_store = new_store();
    let dead = LocalDeadLetters::memory();
    let worker = Worker {
        store: Arc::new(worker_store.clone()),
        blobs: Arc::new(app.stack.blobs.clone()),
        dead_letters: Arc::new(dead.clone()),
        clock: clock.clone(),
        public_base_url: app.config.public_base_url.clone(),
        invite_key: app.stack.invite_key.clone(),
        max_receives: 5,
        metrics: false,
    };
    let options = QueueOptions {
        visibility_timeout: Duration::from_millis(200),
        max_receives: 5,
        concurrency: 2,
    };
    let queue = LocalQueue::start(worker, options, dead);
    let mut stores = BTreeMap::new();
    let mut routers: Vec<(&'static str, String, String, Router)> = Vec::new();
    for function in Function::ALL {
        let store = new_store();
        // As at a cold start (the WarmUp grant).
        if function != Function::Pages {
            store.warm_up().await;
        }
        let functions = Functions::new(
            &app.config,
            Arc::new(store.clone()),
            Arc::new(app.stack.blobs.clone()),
            Arc::new(queue.clone()),
            clock.clone(),
            tally_dev::functions::Keys {
                jwt: &app.stack.keys,
                invite: &app.stack.invite_key,
                live: &app.stack.live_key,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let router = functions.app(function);
        for (method, path) in &deployed[function.name()].routes {
            routers.push((
                function.name(),
                method.clone(),
                path.clone(),
                router.clone(),
            ));
        }
        if function != Function::Pages {
            stores.insert(function.name(), store);
        }
    }
    worker_store.warm_up().await;
    let routers = Arc::new(routers);
    let reached = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = reached.clone();
    let gateway = tower::service_fn(move |request: Request<Body>| {
        let (routers, seen) = (routers.clone(), seen.clone());
        async move {
            let path = request.uri().path().to_owned();
            let method = request.method().as_str().to_owned();
            let best = routers
                .iter()
                .filter(|(_, m, _, _)| *m == method)
                .filter_map(|r| matches(&r.2, &path).map(|score| (score, r)))
                .max_by_key(|(score, _)| *score);
            let Some((_, (function, m, route, router))) = best else {
                panic!("no function of template.yaml serves {method} {path}");
            };
            seen.lock().unwrap_or_else(PoisonError::into_inner).insert((
                *function,
                m.clone(),
                route.clone(),
            ));
            Ok::<_, Infallible>(router.clone().oneshot(request).await.into_response_ok())
        }
    });
    app.stack.app = Router::new().fallback_service(gateway);
    PerFunction {
        stores,
        worker: worker_store,
        reached,
    }
}

/// `Router::oneshot` cannot fail; this unwraps its `Infallible` without an `unwrap()`.
trait IntoResponseOk {
    fn into_response_ok(self) -> axum::response::Response;
}

impl IntoResponseOk for Result<axum::response::Response, Infallible> {
    fn into_response_ok(self) -> axum::response::Response {
        match self {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// Every route of every function, the rare writes included: a duplicate registration, a wrong
/// password, a refresh, a reused refresh token (the family revoked), logout, logout-all,
/// idempotency claims and their replay, a poll's update, closing and deletion, ballots by a
/// user and by a guest's invite, a repeated ballot, results, an unknown invite, each kind of
/// job to its end (the worker's chunks, invites, files and finish), a job over the quota.
async fn drive_every_route(app: &TestApp) {
    let ok = |reply: tally_tests::Reply, what: &str| {
        assert!(reply.status.is_success(), "{what}: {reply:#?}");
        reply
    };
    app.get("/v1/health").send().await.expect(200);
    let owner = app.sign_up("owner@example.com").await;
    let token = owner.access_token.clone();
    app.post("/v1/auth/register")
        .json(json!({ "email": "owner@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect(409);
    app.login("owner@example.com", "wrong password")
        .await
        .expect(401);
    app.get("/v1/me").bearer(&token).send().await.expect(200);

    // Refresh, then reuse of the spent token: the family is revoked.
    let refresh = |t: String| {
        app.post("/v1/auth/refresh")
            .json(json!({ "refresh_token": t }))
            .send()
    };
    let rotated = ok(refresh(owner.refresh_token.clone()).await, "refresh");
    assert!(rotated.body["refresh_token"].is_string());
    assert_eq!(
        refresh(owner.refresh_token.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = ok(app.login("owner@example.com", PASSWORD).await, "login");
    let again_refresh = again.body["refresh_token"].as_str().unwrap_or_default();
    ok(
        app.post("/v1/auth/logout")
            .json(json!({ "refresh_token": again_refresh }))
            .send()
            .await,
        "logout",
    );
    ok(
        app.post("/v1/auth/logout-all").bearer(&token).send().await,
        "logout-all",
    );
    // Access tokens outlive a logout-all by design; a new login starts a new family.
    let token = ok(app.login("owner@example.com", PASSWORD).await, "login").body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Polls: an idempotent creation and its replay, list, read, change, close, delete.
    let create = || {
        app.post("/v1/polls")
            .bearer(&token)
            .header("idempotency-key", "iam-1")
            .json(json!({ "question": "Lunch?", "options": ["Pizza", "Soup"] }))
            .send()
    };
    let poll = ok(create().await, "create poll").body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ok(create().await, "replayed creation");
    ok(app.get("/v1/polls").bearer(&token).send().await, "list");
    let read = ok(
        app.get(&format!("/v1/polls/{poll}"))
            .bearer(&token)
            .send()
            .await,
        "read",
    );
    let etag = read.header("etag").unwrap_or_default().to_owned();
    ok(
        app.patch(&format!("/v1/polls/{poll}"))
            .bearer(&token)
            .header("if-match", &etag)
            .json(json!({ "question": "Lunch today?" }))
            .send()
            .await,
        "patch",
    );
    let doomed = app.lunch_poll(&token).await;
    let etag = app
        .get(&format!("/v1/polls/{doomed}"))
        .bearer(&token)
        .send()
        .await
        .header("etag")
        .unwrap_or_default()
        .to_owned();
    ok(
        app.delete(&format!("/v1/polls/{doomed}"))
            .bearer(&token)
            .header("if-match", &etag)
            .send()
            .await,
        "delete",
    );

    // Ballots and results.
    let voter = app.mint_token();
    ok(app.vote(&voter, &poll, &["o1"]).await, "vote");
    app.vote(&voter, &poll, &["o1"])
        .await
        .expect_problem(409, "already-voted");
    ok(app.results(&token, &poll).await, "results");
    ok(
        app.live_pass(&format!("Bearer {token}"), &poll).await,
        "a live pass",
    );

    // Jobs: invites (the guests and their invites written by the route), a QR code, a chart;
    // each read and downloaded.
    let invited = app
        .create_poll(
            &token,
            json!({ "question": "Which day?", "options": ["Fri", "Sat"], "visibility": "invite" }),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let jobs = [
        (
            format!("/v1/polls/{invited}/invites"),
            json!({ "guests": [{ "name": "Ann" }, { "name": "Bob" }] }),
        ),
        (format!("/v1/polls/{poll}/qr"), json!({ "format": "png" })),
        (format!("/v1/polls/{poll}/chart"), json!({})),
    ];
    let mut ids = Vec::new();
    for (path, body) in &jobs {
        let started = ok(
            app.post(path)
                .bearer(&token)
                .json(body.clone())
                .send()
                .await,
            path,
        );
        // The same request again finds the job its request marker points at.
        ok(
            app.post(path)
                .bearer(&token)
                .json(body.clone())
                .send()
                .await,
            path,
        );
        ids.push(started.body["id"].as_str().unwrap_or_default().to_owned());
    }
    for id in &ids {
        let done = app.wait_for_job(&token, id, Duration::from_secs(300)).await;
        assert_eq!(done.body["status"], "done", "{:#}", done.body);
        app.get(&format!("/v1/jobs/{id}/download"))
            .bearer(&token)
            .send()
            .await
            .expect(302);
    }
    ok(
        app.get(&format!("/v1/polls/{poll}/jobs"))
            .bearer(&token)
            .send()
            .await,
        "a poll's jobs",
    );
    let cards = super::jobs::cards_of(&app.download(&token, &ids[0]).await);
    let invite = super::jobs::token_of(&cards[0].1, &app.config.public_base_url);
    ok(
        app.get(&format!("/v1/invites/{invite}")).send().await,
        "invite",
    );
    ok(
        app.post(&format!("/v1/polls/{invited}/votes"))
            .header("authorization", &format!("Invite {invite}"))
            .json(json!({ "choices": ["o1"] }))
            .send()
            .await,
        "guest vote",
    );
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    app.get(&format!("/v1/invites/{unknown}"))
        .send()
        .await
        .expect(404);
    let refused = app
        .post(&format!("/v1/polls/{invited}/votes"))
        .header("authorization", &format!("Invite {unknown}"))
        .json(json!({ "choices": ["o1"] }))
        .send()
        .await;
    assert!(refused.status.is_client_error(), "{refused:#?}");

    // The guest list: add, list, revoke, reissue, and cards for a guest.
    let added = ok(
        app.post(&format!("/v1/polls/{invited}/guests"))
            .bearer(&token)
            .json(json!({ "guests": [{ "name": "Cy" }] }))
            .send()
            .await,
        "add guests",
    );
    let cy = added.body["guests"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ok(
        app.get(&format!("/v1/polls/{invited}/guests"))
            .bearer(&token)
            .send()
            .await,
        "list guests",
    );
    for action in ["revoke", "reissue"] {
        ok(
            app.post(&format!("/v1/polls/{invited}/guests/{cy}/{action}"))
                .bearer(&token)
                .send()
                .await,
            action,
        );
    }
    let cards = ok(
        app.post(&format!("/v1/polls/{invited}/cards"))
            .bearer(&token)
            .json(json!({ "guests": [cy] }))
            .send()
            .await,
        "cards",
    );
    let job = cards.body["id"].as_str().unwrap_or_default().to_owned();
    let done = app
        .wait_for_job(&token, &job, Duration::from_secs(300))
        .await;
    assert_eq!(done.body["status"], "done", "{:#}", done.body);

    ok(
        app.post(&format!("/v1/polls/{poll}/close"))
            .bearer(&token)
            .send()
            .await,
        "close",
    );

    // Over the day's render quota (10 guests, see the test's configuration).
    let over =
        json!({ "guests": (0..9).map(|i| json!({ "name": format!("G{i}") })).collect::<Vec<_>>() });
    let refused = app
        .post(&format!("/v1/polls/{invited}/invites"))
        .bearer(&token)
        .json(over)
        .send()
        .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{refused:#?}"
    );

    // Deleting an invite poll with a guest who voted: the render worker's purge of its
    // guests, cards and ballots.
    let doomed = app
        .create_poll(
            &token,
            json!({ "question": "Doomed?", "options": ["Yes", "No"], "visibility": "invite" }),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dee = ok(
        app.post(&format!("/v1/polls/{doomed}/guests"))
            .bearer(&token)
            .json(json!({ "guests": [{ "name": "Dee" }] }))
            .send()
            .await,
        "add a guest to the doomed poll",
    )
    .body["guests"][0]["id"]
        .as_str()
        .and_then(GuestId::parse)
        .unwrap_or_else(|| panic!("a guest id"));
    let doomed_id: PollId = doomed
        .parse()
        .unwrap_or_else(|_| panic!("poll id {doomed}"));
    let card = app.stack.invite_key.token(doomed_id, &dee, 0);
    ok(
        app.post(&format!("/v1/polls/{doomed}/votes"))
            .header("authorization", &format!("Invite {card}"))
            .json(json!({ "choices": ["o1"] }))
            .send()
            .await,
        "the doomed poll's guest votes",
    );
    let etag = app
        .get(&format!("/v1/polls/{doomed}"))
        .bearer(&token)
        .send()
        .await
        .header("etag")
        .unwrap_or_default()
        .to_owned();
    ok(
        app.delete(&format!("/v1/polls/{doomed}"))
            .bearer(&token)
            .header("if-match", &etag)
            .send()
            .await,
        "delete the invite poll",
    );
    let list = format!("GUEST#{doomed}");
    let started = std::time::Instant::now();
    while app.all_items().await.iter().any(|i| {
        matches!(i.get("PK"), Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)) if *pk == list)
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the deleted poll's guests were not purged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The (action, prefix) pairs a store touched on the table, and the (action, index) pairs on
/// indexes; key-less actions (DescribeTable) have the prefix "".
type Used = (BTreeSet<(String, String)>, BTreeSet<(String, String)>);

fn used(store: &DynamoStore) -> Used {
    let (mut table, mut index) = (BTreeSet::new(), BTreeSet::new());
    for touch in store.touched() {
        let action = format!("dynamodb:{}", touch.action);
        match touch.index {
            Some(i) => index.insert((action, i)),
            None => table.insert((action, touch.prefix)),
        };
    }
    (table, index)
}

/// Compares one function's grants with what it used; every difference is a line of the result.
fn differences(function: &str, grants: &[Statement], (table, index): &Used) -> Vec<String> {
    let mut wrong = Vec::new();
    let on_table = |s: &&Statement| s.resource == "!GetAtt Table.Arn";
    // Every item action on the table is limited by key; only DescribeTable names no item.
    for s in grants.iter().filter(on_table) {
        let keyless = s.actions.iter().all(|a| a == "dynamodb:DescribeTable");
        if s.leading_keys.is_none() && !keyless {
            wrong.push(format!(
                "{function}/{}: item actions on the whole table",
                s.sid
            ));
        }
    }
    for (action, prefix) in table {
        let granted = grants.iter().filter(on_table).any(|s| {
            s.actions.contains(action)
                && match &s.leading_keys {
                    None => prefix.is_empty(),
                    Some(keys) => keys.iter().any(|k| {
                        k.strip_suffix('*')
                            .map_or(k == prefix, |start| prefix.starts_with(start))
                    }),
                }
        });
        if !granted {
            wrong.push(format!(
                "{function}: {action} on {prefix:?} is used but not granted"
            ));
        }
    }
    for (action, name) in index {
        let resource = format!("${{Table.Arn}}/index/{name}");
        if !grants
            .iter()
            .any(|s| s.resource.ends_with(&resource) && s.actions.contains(action))
        {
            wrong.push(format!(
                "{function}: {action} on index {name} is used but not granted"
            ));
        }
    }
    // More than used: a prefix or an action no route of the function needs.
    let granted_prefixes: BTreeSet<String> = grants
        .iter()
        .flat_map(|s| s.leading_keys.iter().flatten())
        .map(|k| k.trim_end_matches('*').to_owned())
        .collect();
    let used_prefixes: BTreeSet<String> = table
        .iter()
        .map(|(_, p)| p.clone())
        .filter(|p| !p.is_empty())
        .collect();
    for extra in granted_prefixes.difference(&used_prefixes) {
        wrong.push(format!("{function}: {extra}* is granted but never used"));
    }
    let used_actions: BTreeSet<&String> = table.iter().chain(index).map(|(a, _)| a).collect();
    for s in grants {
        for action in &s.actions {
            if !used_actions.contains(action) {
                wrong.push(format!(
                    "{function}/{}: {action} is granted but never used",
                    s.sid
                ));
            }
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_role_grants_exactly_the_keys_its_routes_touch() {
    let deployed = deployed();
    for function in Function::ALL {
        let d = deployed.get(function.name());
        assert!(
            d.is_some_and(|d| !d.routes.is_empty()),
            "no routes of {} read from template.yaml",
            function.name()
        );
    }
    assert!(
        deployed
            .get("render")
            .is_some_and(|d| !d.statements.is_empty()),
        "no DynamoDB statements of render read from template.yaml"
    );
    let mut app =
        TestApp::start_with(&[("TALLY_RENDER_GUESTS_PER_DAY", "10")], Storage::Memory).await;
    let per = per_function(&mut app, &deployed).await;
    drive_every_route(&app).await;

    // Every route of every HTTP function was reached through its own router.
    let reached = per
        .reached
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for function in Function::ALL {
        let name = function.name();
        let missing: Vec<_> = deployed[name]
            .routes
            .iter()
            .filter(|(m, p)| !reached.contains(&(name, m.clone(), p.clone())))
            .filter(|(_, p)| p.starts_with("/v1/") && p != "/v1/openapi.json")
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: routes never driven: {missing:?}"
        );
    }

    let mut wrong = Vec::new();
    for (name, store) in &per.stores {
        wrong.extend(differences(name, &deployed[*name].statements, &used(store)));
    }
    wrong.extend(differences(
        "render",
        &deployed["render"].statements,
        &used(&per.worker),
    ));
    // The count function, over a store of its own, counting every ballot the routes cast
    // (and a redelivery of them, which reads nothing more than a refused update returns).
    let count_store = DynamoStore::new(app.store().client().clone(), app.config.table.clone());
    count_store.warm_up().await;
    let counter = tally::count::Counter::new(
        Arc::new(count_store.clone()),
        Arc::new(app.clock.clone()),
        Arc::new(tally::live::Unwatched),
    );
    let records = tally_tests::stream::BallotStream::default()
        .next_batch(app.store())
        .await;
    assert!(records.len() >= 2, "the routes cast ballots");
    for _ in 0..2 {
        let event =
            tally_tests::stream::window_event(tally_tests::stream::TEST_SHARD, records.clone());
        counter
            .handle(event)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    wrong.extend(differences(
        "count",
        &deployed["count"].statements,
        &used(&count_store),
    ));
    assert!(
        deployed["pages"].statements.is_empty(),
        "pages has DynamoDB grants"
    );
    let touched: BTreeMap<_, _> = per
        .stores
        .iter()
        .map(|(n, s)| (*n, used(s).0))
        .chain([
            ("render", used(&per.worker).0),
            ("count", used(&count_store).0),
        ])
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\nused: {touched:#?}");
}
