//! [`JobStore`] for [`DynamoStore`]: render jobs, the request markers that make starting one
//! idempotent, the chunk markers that count each chunk once, the finishing lease, and writing
//! the invites.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::DynamoStore;
use super::items::{InviteItem, JobChunkItem, JobItem, JobRequestItem, unix_ms};
use super::keys::Key;
use super::ops::{NEW_ITEM, internal, num, to_item, updating};
use crate::domain::{Invite, Job, JobId, job::FILE_LIFETIME};
use crate::ports::{JobCreated, JobStore, StoreError, StoreResult};

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
        let items = vec![claim, self.put_new(&JobItem::new(job))?];
        match self.transact(items).await? {
            Ok(()) => Ok(JobCreated::New),
            Err(c) if c.condition_failed(0) => c
                .old_item::<JobRequestItem>(0)?
                .map(|e| JobCreated::Existing(e.job_id))
                .ok_or_else(|| StoreError::Internal("job request marker without its item".into())),
            Err(c) => Err(c.unavailable("create job")),
        }
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        let item: Option<JobItem> = self.get(&Key::Job(id)).await?;
        Ok(item.map(JobItem::into_job))
    }

    async fn put_invites(&self, invites: &[Invite]) -> StoreResult<()> {
        let items = invites
            .iter()
            .map(|invite| to_item(&InviteItem::new(invite)))
            .collect::<StoreResult<Vec<_>>>()?;
        self.batch_put(items).await
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
        // Completing twice (a retried finisher) keeps the first completion.
        self.update_if(update).await.map(|_| ())
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
        self.update_if(update).await
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
