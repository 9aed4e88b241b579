//! The job and invite half of the DynamoDB adapter: [`JobStore`] for [`DynamoStore`].

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use time::OffsetDateTime;

use super::items::{
    BallotItem, InviteItem, JobChunkItem, JobItem, JobRequestItem, PollItem, unix_ms,
};
use super::keys::{Key, PK, SK};
use super::{
    DynamoStore, Transact, conflict_backoff, from_item, internal, num, reason_code, sdk_error,
    to_item,
};
use crate::domain::{
    Ballot, Invite, InviteHash, Job, JobId, Poll, PollId, Voter, job::FILE_LIFETIME,
};
use crate::ports::{JobCreated, JobStore, RateCounter, StoreError, StoreResult};

/// `BatchWriteItem` takes at most 25 requests.
const BATCH_WRITE: usize = 25;
/// Rounds of retrying items DynamoDB left unprocessed (throttling) before giving up.
const UNPROCESSED_RETRIES: u32 = 8;

impl DynamoStore {
    async fn update_job(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> StoreResult<bool> {
        self.count();
        match update.send().await.map_err(sdk_error) {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn sk_of(item: &HashMap<String, AttributeValue>) -> Option<&str> {
    match item.get(SK) {
        Some(AttributeValue::S(sk)) => Some(sk),
        _ => None,
    }
}

fn pk_of(item: &HashMap<String, AttributeValue>) -> Option<&str> {
    match item.get(PK) {
        Some(AttributeValue::S(pk)) => Some(pk),
        _ => None,
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(
        &self,
        job: &Job,
        fingerprint: &str,
        now: OffsetDateTime,
        replacing: Option<JobId>,
    ) -> StoreResult<JobCreated> {
        let key = Key::JobRequest(fingerprint.to_owned());
        let expires_at = (now + FILE_LIFETIME).unix_timestamp();
        let request = JobRequestItem {
            pk: key.pk(),
            sk: key.sk().into(),
            job_id: job.id,
            expires_at,
            ttl: expires_at,
        };
        // The request marker may exist but be stale (TTL deletion lags up to 48 h), so the
        // condition reads its expiry instead of relying on its absence. A marker that still
        // points at the failed job being replaced may be overwritten too; the comparison on
        // its job id makes two concurrent retries agree on one new job.
        let mut condition = String::from("attribute_not_exists(PK) OR expires_at <= :now");
        let mut values = HashMap::from([(":now".to_owned(), num(now.unix_timestamp()))]);
        if let Some(failed) = replacing {
            condition.push_str(" OR job_id = :failed");
            values.insert(":failed".to_owned(), AttributeValue::S(failed.to_string()));
        }
        let mut claim = self.put(to_item(&request)?, Some(&condition))?;
        if let Some(put) = claim.put.as_mut() {
            put.expression_attribute_values = Some(values);
        }
        let items = vec![
            claim,
            self.put(
                to_item(&JobItem::new(job))?,
                Some("attribute_not_exists(PK)"),
            )?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(JobCreated::New),
            Err(Transact::Cancelled(r)) if reason_code(&r, 0) == "ConditionalCheckFailed" => {
                let existing = r[0]
                    .item()
                    .cloned()
                    .map(from_item::<JobRequestItem>)
                    .transpose()?;
                existing
                    .map(|e| JobCreated::Existing(e.job_id))
                    .ok_or_else(|| {
                        StoreError::Internal("job request marker without its item".into())
                    })
            }
            Err(Transact::Cancelled(r)) => Err(StoreError::Unavailable(format!(
                "create job cancelled: {r:?}"
            ))),
            Err(Transact::Failed(e)) => Err(e),
        }
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        let item: Option<JobItem> = self.get(&Key::Job(id)).await?;
        Ok(item.map(JobItem::into_job))
    }

    async fn put_invites(&self, invites: &[Invite]) -> StoreResult<()> {
        for batch in invites.chunks(BATCH_WRITE) {
            let mut requests = batch
                .iter()
                .map(|invite| {
                    let put = PutRequest::builder()
                        .set_item(Some(to_item(&InviteItem::new(invite))?))
                        .build()
                        .map_err(internal)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let mut round = 0;
            while !requests.is_empty() {
                if round > UNPROCESSED_RETRIES {
                    return Err(StoreError::Unavailable(
                        "invite writes stayed unprocessed".into(),
                    ));
                }
                if round > 0 {
                    tokio::time::sleep(conflict_backoff(round)).await;
                }
                self.count();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&*self.table, requests)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                requests = out
                    .unprocessed_items
                    .unwrap_or_default()
                    .remove(&*self.table)
                    .unwrap_or_default();
                round += 1;
            }
        }
        Ok(())
    }

    async fn record_chunk(
        &self,
        job: JobId,
        chunk: u32,
        done: u32,
        failed: u32,
    ) -> StoreResult<bool> {
        let key = Key::JobChunk(job, chunk);
        let marker = JobChunkItem {
            pk: key.pk(),
            sk: key.sk().into(),
            ttl: OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400,
        };
        let count = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::Job(job).item_key()))
            .update_expression("ADD done :done, failed :failed, chunks_done :one")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":done", num(done))
            .expression_attribute_values(":failed", num(failed))
            .expression_attribute_values(":one", num(1))
            .build()
            .map_err(internal)?;
        let items = vec![
            self.put(to_item(&marker)?, Some("attribute_not_exists(PK)"))?,
            TransactWriteItem::builder().update(count).build(),
        ];
        // Every chunk of a job updates the one job item, so render instances working on the
        // same job meet each other's transactions there: those conflicts are retried here
        // rather than sending 100 cards back to the queue for a 12-minute wait.
        match self.transact_through_conflicts(items).await {
            Ok(()) => Ok(true),
            // Counted before (a redelivery), or the job is gone: nothing to add either way.
            Err(Transact::Cancelled(r))
                if r.iter().any(|x| x.code() == Some("ConditionalCheckFailed")) =>
            {
                Ok(false)
            }
            Err(Transact::Cancelled(r)) => Err(StoreError::Unavailable(format!(
                "record chunk cancelled: {r:?}"
            ))),
            Err(Transact::Failed(e)) => Err(e),
        }
    }

    async fn claim_finish(
        &self,
        job: JobId,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::Job(job).item_key()))
            .update_expression("SET finish_until = :until")
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(completed_at) AND attribute_not_exists(#error) \
                 AND chunks_done >= chunks_total AND (attribute_not_exists(finish_until) OR finish_until < :now)",
            )
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":until", num(unix_ms(until)))
            .expression_attribute_values(":now", num(unix_ms(now)));
        self.update_job(update).await
    }

    async fn release_finish(&self, job: JobId) -> StoreResult<()> {
        let update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::Job(job).item_key()))
            .update_expression("REMOVE finish_until")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(completed_at)");
        self.update_job(update).await.map(|_| ())
    }

    async fn complete_job(
        &self,
        job: JobId,
        object_key: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let completed = time::format_description::well_known::Rfc3339;
        let update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::Job(job).item_key()))
            .update_expression("SET completed_at = :at, object_key = :key REMOVE finish_until")
            // A job failed meanwhile (by its deadline, its replacement already started) stays
            // failed: two files for one request would mean two invites per guest.
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(completed_at) AND attribute_not_exists(#error)",
            )
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(
                ":at",
                AttributeValue::S(now.format(&completed).map_err(internal)?),
            )
            .expression_attribute_values(":key", AttributeValue::S(object_key.to_owned()));
        // Completing twice (a retried finisher) keeps the first completion.
        self.update_job(update).await.map(|_| ())
    }

    async fn fail_job(&self, job: JobId, reason: &str) -> StoreResult<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::Job(job).item_key()))
            .update_expression("SET #error = :reason")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(completed_at)")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(
                ":reason",
                AttributeValue::S(reason.chars().take(500).collect()),
            );
        self.update_job(update).await
    }

    async fn poll_and_invite(
        &self,
        poll: PollId,
        token_hash: &InviteHash,
    ) -> StoreResult<(Option<Poll>, Option<Invite>)> {
        let invite_key = Key::Invite(token_hash.to_string());
        let items = self
            .batch_get(&[Key::Poll(poll), invite_key.clone()])
            .await?;
        let (mut found_poll, mut found_invite) = (None, None);
        for item in items {
            if sk_of(&item) == Some("POLL") {
                found_poll = Some(from_item::<PollItem>(item)?.into_poll());
            } else if pk_of(&item) == Some(invite_key.pk().as_str()) {
                found_invite = Some(from_item::<InviteItem>(item)?.into_invite(token_hash.clone()));
            }
        }
        Ok((found_poll, found_invite))
    }

    async fn invite(&self, token_hash: &InviteHash) -> StoreResult<Option<Invite>> {
        let item: Option<InviteItem> = self.get(&Key::Invite(token_hash.to_string())).await?;
        Ok(item.map(|i| i.into_invite(token_hash.clone())))
    }

    async fn poll_and_ballot(
        &self,
        poll: PollId,
        voter: &Voter,
    ) -> StoreResult<(Option<Poll>, Option<Ballot>)> {
        let items = self
            .batch_get(&[Key::Poll(poll), Key::ballot(poll, voter)])
            .await?;
        let (mut found_poll, mut found_ballot) = (None, None);
        for item in items {
            match sk_of(&item) {
                Some("POLL") => found_poll = Some(from_item::<PollItem>(item)?.into_poll()),
                Some("BALLOT") => {
                    found_ballot = Some(from_item::<BallotItem>(item)?.into_ballot(voter.clone()))
                }
                _ => {}
            }
        }
        Ok((found_poll, found_ballot))
    }
}

#[async_trait]
impl RateCounter for DynamoStore {
    async fn hit(&self, scope: &str, window_start: i64, window_seconds: i64) -> StoreResult<u64> {
        self.count();
        let out = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::Rate(scope.to_owned(), window_start).item_key()))
            .update_expression("ADD hits :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#ttl", super::keys::TTL)
            .expression_attribute_values(":one", num(1))
            // Kept an hour past the window; reads never look at old windows anyway.
            .expression_attribute_values(":ttl", num(window_start + window_seconds + 3_600))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        match out.attributes.as_ref().and_then(|a| a.get("hits")) {
            Some(AttributeValue::N(n)) => n.parse().map_err(internal),
            _ => Err(StoreError::Internal("rate counter without a count".into())),
        }
    }
}
