//! [`JobStore`] for [`DynamoStore`]: render jobs, the request markers that make starting one
//! idempotent, the chunk markers that count each chunk once, and the finishing lease.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use super::items::{JobChunkItem, JobItem, JobRequestItem, unix_ms};
use super::keys::{
    GSI1, Key, TTL, in_flight_job, in_flight_marker, poll_jobs_index, poll_jobs_index_start,
    prefix_of,
};
use super::ops::{NEW_ITEM, from_item, internal, num, to_item, updating};
use super::{DynamoStore, Touch};
use crate::domain::job::{FILE_LIFETIME, JOB_DEADLINE};
use crate::domain::{Job, JobId, PollId, UserId};
use crate::ports::{JobCreated, JobCursor, JobStore, StoreError, StoreResult};

/// The condition of every write to a job's outcome: the job exists and has not completed.
const UNFINISHED: &str = "attribute_exists(PK) AND attribute_not_exists(completed_at)";

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(
        &self,
        job: &Job,
        fingerprint: &str,
        now: OffsetDateTime,
        replacing: Option<JobId>,
        in_flight: u32,
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
        let mut condition = format!("{NEW_ITEM} OR expires_at <= :now");
        let mut values = HashMap::from([(":now".to_owned(), num(now.unix_timestamp()))]);
        if let Some(failed) = replacing {
            condition.push_str(" OR job_id = :failed");
            values.insert(":failed".to_owned(), AttributeValue::S(failed.to_string()));
        }
        let mut claim = self.put(to_item(&request)?, Some(&condition))?;
        if let Some(put) = claim.put.as_mut() {
            put.expression_attribute_values = Some(values);
        }
        let job_item = self.put_new(&JobItem::new(job))?;
        let mut lapsed = Vec::new();
        // At most two tries: the second only when the first found the owner at the limit
        // with slots past their deadline, which it then frees in the same write.
        loop {
            let slot = self.take_slot(job, now, in_flight, &lapsed)?;
            let items = vec![claim.clone(), job_item.clone(), slot];
            let c = match self.transact(items).await? {
                Ok(()) => return Ok(JobCreated::New),
                Err(c) => c,
            };
            // The same request made a job already: it answers whatever the slots say.
            if c.condition_failed(0) {
                return c
                    .old_item::<JobRequestItem>(0)?
                    .map(|e| JobCreated::Existing(e.job_id))
                    .ok_or_else(|| {
                        StoreError::Internal("job request marker without its item".into())
                    });
            }
            if !c.condition_failed(2) {
                return Err(c.unavailable("create job"));
            }
            let held = c
                .old_item::<HashMap<String, serde_json::Value>>(2)?
                .unwrap_or_default();
            let markers: Vec<(JobId, i64)> = held
                .iter()
                .filter_map(|(name, until)| Some((in_flight_job(name)?, until.as_i64()?)))
                .collect();
            let now_ms = unix_ms(now);
            let stale: Vec<JobId> = markers
                .iter()
                .filter(|(_, until)| *until <= now_ms)
                .map(|(id, _)| *id)
                .collect();
            if stale.is_empty() || !lapsed.is_empty() {
                return Ok(JobCreated::Full(
                    markers
                        .into_iter()
                        .filter(|(_, until)| *until > now_ms)
                        .map(|(id, _)| id)
                        .collect(),
                ));
            }
            lapsed = stale;
        }
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        let item: Option<JobItem> = self.get(&Key::Job(id)).await?;
        Ok(item.map(JobItem::into_job))
    }

    async fn jobs_of_poll(
        &self,
        poll: PollId,
        limit: u16,
        after: Option<&JobCursor>,
    ) -> StoreResult<(Vec<Job>, Option<JobCursor>)> {
        let (index_pk, _) = poll_jobs_index(poll, 0, JobId::new());
        // A query names its partition key in a value, not in a key map: recorded by hand.
        let touches = vec![Touch::new(
            "Query",
            "Query",
            prefix_of(&index_pk),
            Some(GSI1),
        )];
        let start = after.map(|c| poll_jobs_index_start(poll, c.created_ms, c.id));
        // One more than asked: whether it arrives tells if there is a next page.
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :poll")
            .expression_attribute_values(":poll", AttributeValue::S(index_pk))
            .scan_index_forward(false)
            .limit(i32::from(limit) + 1)
            .set_exclusive_start_key(start);
        let out = self.send(touches, query.send()).await?;
        let mut jobs = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| from_item::<JobItem>(i).map(JobItem::into_job))
            .collect::<StoreResult<Vec<_>>>()?;
        let next = if jobs.len() > usize::from(limit) {
            jobs.truncate(usize::from(limit));
            jobs.last().map(|j| JobCursor {
                created_ms: unix_ms(j.created_at),
                id: j.id,
            })
        } else {
            None
        };
        Ok((jobs, next))
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
        let count = self
            .update_in_transaction(&Key::Job(job))
            .update_expression("ADD done :done, failed :failed, chunks_done :one")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":done", num(done))
            .expression_attribute_values(":failed", num(failed))
            .expression_attribute_values(":one", num(1));
        let items = vec![self.put_new(&marker)?, updating(count)?];
        // Every chunk of a job updates the one job item, so render instances working on the
        // same job meet each other's transactions there: those conflicts are retried here
        // rather than sending 100 cards back to the queue for a 12-minute wait.
        match self
            .transact_through_conflicts(|| Ok(items.clone()))
            .await?
        {
            Ok(()) => Ok(true),
            // Counted before (a redelivery), or the job is gone: nothing to add either way.
            Err(c) if c.failed_conditions().next().is_some() => Ok(false),
            Err(c) => Err(c.unavailable("record chunk")),
        }
    }

    async fn claim_finish(
        &self,
        job: JobId,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let update = self
            .update(&Key::Job(job))
            .update_expression("SET finish_until = :until")
            .condition_expression(format!(
                "{UNFINISHED} AND attribute_not_exists(#error) \
                 AND chunks_done >= chunks_total AND (attribute_not_exists(finish_until) OR finish_until < :now)"
            ))
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":until", num(unix_ms(until)))
            .expression_attribute_values(":now", num(unix_ms(now)));
        self.update_if(update).await
    }

    async fn renew_finish(&self, job: JobId, until: OffsetDateTime) -> StoreResult<bool> {
        let update = self
            .update(&Key::Job(job))
            .update_expression("SET finish_until = :until")
            .condition_expression(format!(
                "{UNFINISHED} AND attribute_not_exists(#error) AND attribute_exists(finish_until)"
            ))
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":until", num(unix_ms(until)));
        self.update_if(update).await
    }

    async fn record_bundled(&self, job: JobId, bundled: u32) -> StoreResult<bool> {
        let update = self
            .update(&Key::Job(job))
            .update_expression("SET bundled = :n")
            .condition_expression(format!(
                "{UNFINISHED} AND attribute_not_exists(#error) \
                 AND (attribute_not_exists(bundled) OR bundled < :n)"
            ))
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":n", num(bundled));
        self.update_if(update).await
    }

    async fn release_finish(&self, job: JobId) -> StoreResult<()> {
        let update = self
            .update(&Key::Job(job))
            .update_expression("REMOVE finish_until")
            .condition_expression(UNFINISHED);
        self.update_if(update).await.map(|_| ())
    }

    async fn complete_job(
        &self,
        job: JobId,
        object_key: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let completed = time::format_description::well_known::Rfc3339;
        let update = self
            .update(&Key::Job(job))
            .update_expression("SET completed_at = :at, object_key = :key REMOVE finish_until")
            // A job failed meanwhile (by its deadline, its replacement already started) stays
            // failed: two files for one request would mean two invites per guest.
            .condition_expression(format!("{UNFINISHED} AND attribute_not_exists(#error)"))
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(
                ":at",
                AttributeValue::S(now.format(&completed).map_err(internal)?),
            )
            .expression_attribute_values(":key", AttributeValue::S(object_key.to_owned()));
        // Completing twice (a retried finisher) keeps the first completion, and the first
        // freed the slot.
        if let Some(owner) = self.ended(update).await? {
            self.free_slot(owner, job).await?;
        }
        Ok(())
    }

    async fn fail_job(&self, job: JobId, reason: &str) -> StoreResult<bool> {
        let update = self
            .update(&Key::Job(job))
            .update_expression("SET #error = :reason")
            .condition_expression(UNFINISHED)
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(
                ":reason",
                AttributeValue::S(reason.chars().take(500).collect()),
            );
        match self.ended(update).await? {
            Some(owner) => self.free_slot(owner, job).await.map(|()| true),
            None => Ok(false),
        }
    }
}

impl DynamoStore {
    /// The transaction item that takes one of the owner's `limit` in-flight slots for `job`,
    /// freeing the `lapsed` ones (past their deadline, as read on a first try) in the same
    /// write. The slots live in one item so that one condition sees them all: `n` counts the
    /// markers, so two starts at once cannot both take the last slot, and each marker holds
    /// its job's deadline, so a slot that no worker ever freed (it died) lapses when its job
    /// counts as failed. The marker (rather than a bare counter) makes freeing idempotent:
    /// only a removal that finds its marker decrements `n`.
    fn take_slot(
        &self,
        job: &Job,
        now: OffsetDateTime,
        limit: u32,
        lapsed: &[JobId],
    ) -> StoreResult<aws_sdk_dynamodb::types::TransactWriteItem> {
        let until = unix_ms(job.created_at + JOB_DEADLINE);
        let mut update = self
            .update_in_transaction(&Key::InFlight(job.owner_id))
            .expression_attribute_names("#job", in_flight_marker(job.id))
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":until", num(until))
            .expression_attribute_values(":room", num(u64::from(limit) + lapsed.len() as u64))
            // The newest job has the latest deadline; an hour more covers clocks that differ.
            .expression_attribute_values(":ttl", num(until / 1000 + 3_600))
            .expression_attribute_values(":delta", num(1 - lapsed.len() as i64))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut condition = "(attribute_not_exists(n) OR n < :room)".to_owned();
        let mut remove = Vec::new();
        if !lapsed.is_empty() {
            update = update.expression_attribute_values(":now", num(unix_ms(now)));
        }
        for (i, id) in lapsed.iter().enumerate() {
            update = update.expression_attribute_names(format!("#old{i}"), in_flight_marker(*id));
            // Each freed slot must still be there and lapsed, so `n` drops by exactly as
            // many markers as are removed.
            condition.push_str(&format!(" AND #old{i} <= :now"));
            remove.push(format!("#old{i}"));
        }
        let mut expression = "SET #job = :until, #ttl = :ttl ADD n :delta".to_owned();
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        updating(
            update
                .update_expression(expression)
                .condition_expression(condition),
        )
    }

    /// Sends an update that records a job's end: its owner when it held, `None` when the job
    /// had completed already (or is gone).
    async fn ended(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> StoreResult<Option<UserId>> {
        let out = match self
            .send_update(update.return_values(ReturnValue::AllNew))
            .await
        {
            Ok(out) => out,
            Err(StoreError::ConditionFailed) => return Ok(None),
            Err(e) => return Err(e),
        };
        match out.attributes.as_ref().and_then(|a| a.get("owner_id")) {
            Some(AttributeValue::S(owner)) => owner.parse().map(Some).map_err(internal),
            _ => Err(StoreError::Internal("job without its owner".into())),
        }
    }

    /// Frees the job's in-flight slot (one call); a slot freed before, or lapsed and reused,
    /// is left alone.
    async fn free_slot(&self, owner: UserId, job: JobId) -> StoreResult<()> {
        let update = self
            .update(&Key::InFlight(owner))
            .update_expression("REMOVE #job ADD n :minus")
            .condition_expression("attribute_exists(#job)")
            .expression_attribute_names("#job", in_flight_marker(job))
            .expression_attribute_values(":minus", num(-1));
        self.update_if(update).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{busy_twice, sent};
    use super::*;

    /// Render instances counting chunks of the same job meet on the job item.
    #[tokio::test(start_paused = true)]
    async fn counting_a_chunk_gets_through_conflicts() {
        let (store, seen) = busy_twice();
        let counted = store.record_chunk(JobId::new(), 3, 100, 0).await;
        assert!(matches!(counted, Ok(true)), "{counted:?}");
        assert_eq!(sent(&seen), 3);
    }
}
