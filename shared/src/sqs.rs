//! The SQS adapter: [`RenderQueue`] over `aws-sdk-sqs`. Only this module knows SQS's SDK types.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::ports::{
    DeadLetters, PurgeMessage, RenderMessage, RenderQueue, StoreError, StoreResult,
};

/// `SendMessageBatch` takes at most ten messages.
const BATCH: usize = 10;
/// ... and at most 256 KiB of message bodies in all (each message's limit too). A chunk of 100
/// guests at the input limits (100-character names, 254-character emails) is about 38 KB, so
/// ten of them would not fit in one request.
const BATCH_BYTES: usize = 256 * 1024;

/// Groups message bodies into `SendMessageBatch` requests: in order, at most [`BATCH`] bodies
/// and [`BATCH_BYTES`] per request. A body over the limit on its own is an error: SQS would
/// refuse it in any request.
pub fn batches(bodies: Vec<String>) -> StoreResult<Vec<Vec<String>>> {
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for body in bodies {
        if body.len() > BATCH_BYTES {
            return Err(StoreError::Internal(format!(
                "a render message of {} bytes is over SQS's {BATCH_BYTES}",
                body.len()
            )));
        }
        match batches.last_mut() {
            Some(batch) if batch.len() < BATCH && bytes + body.len() <= BATCH_BYTES => {
                bytes += body.len();
                batch.push(body);
            }
            _ => {
                bytes = body.len();
                batches.push(vec![body]);
            }
        }
    }
    Ok(batches)
}

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    /// How long SQS holds a purge message before delivering it (`DelaySeconds`).
    purge_delay: std::time::Duration,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            purge_delay: std::time::Duration::ZERO,
        }
    }

    /// Purge messages delivered `delay` after they are sent (at most SQS's 15 minutes): see
    /// [`crate::ports::PURGE_DELAY`].
    pub fn with_purge_delay(mut self, delay: std::time::Duration) -> Self {
        self.purge_delay = delay.min(std::time::Duration::from_secs(900));
        self
    }
}

#[async_trait]
impl RenderQueue for SqsQueue {
    async fn send(&self, messages: &[RenderMessage]) -> StoreResult<()> {
        let bodies = messages
            .iter()
            .map(|m| serde_json::to_string(m).map_err(|e| StoreError::Internal(e.to_string())))
            .collect::<StoreResult<Vec<_>>>()?;
        for batch in batches(bodies)? {
            let entries = batch
                .into_iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(DisplayErrorContext(&e).to_string()))?;
            if let Some(failed) = out.failed.first() {
                return Err(StoreError::Unavailable(format!(
                    "SQS refused a message: {} {}",
                    failed.code,
                    failed.message.as_deref().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    async fn purge(&self, message: &PurgeMessage) -> StoreResult<()> {
        let body =
            serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(i32::try_from(self.purge_delay.as_secs()).unwrap_or(900))
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}

/// The dead-letter queue, reached as an [`SqsQueue`] on its own URL (the render function's
/// `TALLY_DEAD_LETTER_QUEUE_URL`).
#[async_trait]
impl DeadLetters for SqsQueue {
    async fn dead_letter(&self, body: &str) -> StoreResult<()> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(batches: &[Vec<String>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn small_messages_go_ten_at_a_time() {
        let bodies: Vec<String> = (0..25).map(|i| format!("message {i}")).collect();
        let batches = batches(bodies).unwrap_or_default();
        assert_eq!(sizes(&batches), [10, 10, 5]);
        assert_eq!(batches[2][4], "message 24", "order is kept");
    }

    /// Ten chunks of guests with long names and emails (38 KB each) are 380 KB: more than
    /// one request may carry.
    #[test]
    fn large_messages_split_by_bytes() {
        let bodies: Vec<String> = (0..10).map(|_| "x".repeat(38_000)).collect();
        let batches = batches(bodies).unwrap_or_default();
        assert_eq!(sizes(&batches), [6, 4]);
        for batch in &batches {
            assert!(batch.iter().map(String::len).sum::<usize>() <= BATCH_BYTES);
        }
    }

    #[test]
    fn a_message_over_the_limit_is_an_error() {
        assert!(batches(vec!["x".repeat(BATCH_BYTES + 1)]).is_err());
        assert_eq!(
            sizes(&batches(vec!["x".repeat(BATCH_BYTES)]).unwrap_or_default()),
            [1]
        );
    }
}
