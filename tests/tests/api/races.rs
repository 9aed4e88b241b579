//! Races: many ballots at the same moment through the real routers and the real store, then
//! exact counts. The engine serialises requests like DynamoDB's conditional writes do per item,
//! so these prove that the guard is the conditional write and not a read before it.

use std::sync::Arc;

use futures::future::join_all;
use serde_json::json;
use tally_tests::TestApp;
use tokio::sync::Barrier;

/// A poll with `options`, owned by a new user: the owner's token and the poll's id.
async fn race_poll(app: &TestApp, options: &[&str]) -> (String, Arc<str>) {
    let owner = app.mint_token();
    let poll = app
        .create_poll(&owner, json!({ "question": "Race?", "options": options }))
        .await;
    let id = poll.body["id"].as_str().unwrap_or_default().into();
    (owner, id)
}

/// Runs `work` for each index in `0..n` on its own task, all released at the same instant by
/// a barrier, and returns the outputs in index order.
async fn all_at_once<T, F, Fut>(n: usize, work: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks = (0..n).map(|i| {
        let (barrier, work) = (barrier.clone(), work(i));
        tokio::spawn(async move {
            barrier.wait().await;
            work.await
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("task: {e}")))
        .collect()
}

/// 500 voters each send two ballots at once: each gets exactly one 201 and one 409, and the
/// settled results count exactly the 201s (500), split by the choices made.
async fn five_hundred_voters_racing_two_ballots_each(app: TestApp) {
    const VOTERS: usize = 500;
    let app = Arc::new(app);
    let (owner, id) = race_poll(&app, &["a", "b", "c"]).await;
    let voters: Arc<Vec<String>> = Arc::new((0..VOTERS).map(|_| app.mint_token()).collect());
    let outcomes = all_at_once(VOTERS * 2, |n| {
        let (app, id, voters) = (app.clone(), id.clone(), voters.clone());
        let i = n / 2;
        async move {
            let choice = ["o1", "o2", "o3"][i % 3];
            (
                i,
                app.vote(&voters[i], &id, &[choice]).await.status.as_u16(),
            )
        }
    })
    .await;
    let accepted = outcomes.iter().filter(|(_, s)| *s == 201).count();
    let mut per_voter = vec![Vec::new(); VOTERS];
    for (i, status) in outcomes {
        per_voter[i].push(status);
    }
    for (i, statuses) in per_voter.iter_mut().enumerate() {
        statuses.sort_unstable();
        assert_eq!(statuses, &[201, 409], "voter {i}");
    }
    // Counted from the stream: once settled, exactly the ballots that were answered 201.
    let results = app.settled_results(&owner, &id).await.expect(200);
    assert_eq!(results.body["total"], accepted);
    let expected = |k: usize| (0..VOTERS).filter(|i| i % 3 == k).count();
    for k in 0..3 {
        assert_eq!(
            results.body["options"][k]["votes"],
            expected(k),
            "option {k}"
        );
    }
}

/// One voter sends 50 ballots at once: one 201, 49 409s, one vote counted.
async fn one_voter_racing_fifty_ballots(app: TestApp) {
    const BALLOTS: usize = 50;
    let app = Arc::new(app);
    let (owner, id) = race_poll(&app, &["a", "b"]).await;
    let voter: Arc<str> = app.mint_token().into();
    let mut statuses = all_at_once(BALLOTS, |i| {
        let (app, id, voter) = (app.clone(), id.clone(), voter.clone());
        async move {
            app.vote(&voter, &id, &[["o1", "o2"][i % 2]])
                .await
                .status
                .as_u16()
        }
    })
    .await;
    statuses.sort_unstable();
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    let mut expected = vec![201];
    expected.extend(std::iter::repeat_n(409, BALLOTS - 1));
    assert_eq!(statuses, expected);
    let results = app.settled_results(&owner, &id).await.expect(200);
    assert_eq!(results.body["total"], accepted);
    let votes = results.body["options"][0]["votes"].as_u64().unwrap_or(9)
        + results.body["options"][1]["votes"].as_u64().unwrap_or(9);
    assert_eq!(votes, 1);
}

/// One voter retries one request 20 times at once with the same Idempotency-Key: every
/// answer is the same 201 and one vote is counted.
async fn concurrent_retries_with_one_idempotency_key_all_get_the_first_answer(app: TestApp) {
    const RETRIES: usize = 20;
    let app = Arc::new(app);
    let (owner, id) = race_poll(&app, &["a", "b"]).await;
    let voter: Arc<str> = app.mint_token().into();
    let replies = all_at_once(RETRIES, |_| {
        let (app, id, voter) = (app.clone(), id.clone(), voter.clone());
        async move {
            app.post(&format!("/v1/polls/{id}/votes"))
                .bearer(&voter)
                .header("idempotency-key", "same-request")
                .json(json!({ "choices": ["o2"] }))
                .send()
                .await
        }
    })
    .await;
    assert_eq!(replies.len(), RETRIES);
    for reply in &replies {
        assert_eq!(reply.status.as_u16(), 201, "{reply:#?}");
        assert_eq!(reply.body, replies[0].body);
    }
    assert_eq!(app.settled_results(&owner, &id).await.body["total"], 1);
}

tally_tests::on_every_backend!(
    five_hundred_voters_racing_two_ballots_each,
    one_voter_racing_fifty_ballots,
    concurrent_retries_with_one_idempotency_key_all_get_the_first_answer,
);
