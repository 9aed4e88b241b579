//! The SQS adapter: [`RenderQueue`] over `aws-sdk-sqs`. Only this module knows SQS's SDK types.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::ports::{RenderMessage, RenderQueue, StoreError, StoreResult};

/// `SendMessageBatch` takes at most ten messages.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl RenderQueue for SqsQueue {
    async fn send(&self, messages: &[RenderMessage]) -> StoreResult<()> {
        for batch in messages.chunks(BATCH) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, message)| {
                    let body = serde_json::to_string(message)
                        .map_err(|e| StoreError::Internal(e.to_string()))?;
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
}
