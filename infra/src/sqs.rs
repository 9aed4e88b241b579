//! Lambda's SQS event source mapping, played against a real SQS endpoint (moto in the
//! cross-check): the jobs routes enqueue through the production adapter (`tally::sqs`), and
//! this poller receives those messages over the SQS protocol, hands them to the render
//! function's handler as the `SqsEvent` Lambda would, and deletes the ones it processed. A
//! message reported as failed is left alone, so SQS delivers it again after its visibility
//! timeout, as on AWS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tally::worker::Worker;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::{LOCAL_REGION, QueueOptions};

/// An SQS SDK client for a local endpoint.
pub fn local_sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(crate::local_credentials())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The render queue's name for a table: SQS allows letters, digits, `-` and `_`, 80 at most.
pub fn queue_name_for(table: &str) -> String {
    let safe: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(73)
        .collect();
    format!("{safe}-render")
}

/// The render queue's dead-letter queue's name for a table (within SQS's 80 characters).
pub fn dead_letter_queue_name_for(table: &str) -> String {
    let render = queue_name_for(table);
    format!("{}-dlq", render.trim_end_matches("-render"))
}

/// Creates the queue (idempotent on SQS for the same attributes) and returns its URL.
pub async fn ensure_queue(client: &aws_sdk_sqs::Client, name: &str) -> Result<String, String> {
    client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "create queue {name}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        })?
        .queue_url
        .ok_or_else(|| format!("create queue {name}: no URL in the answer"))
}

/// Receives from one queue and runs the worker on each batch until dropped.
#[derive(Debug)]
pub struct SqsPoller {
    task: JoinHandle<()>,
}

impl Drop for SqsPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SqsPoller {
    pub fn start(
        client: aws_sdk_sqs::Client,
        url: String,
        worker: Worker,
        options: QueueOptions,
    ) -> Self {
        // A received batch stays invisible for longer than any batch takes to process (a debug
        // build renders slowly), as the template's 720 s do for the render function: a shorter
        // one would hand the same messages to a second worker while the first still works.
        // A message reported as failed is made visible again after the configured (short)
        // timeout instead, so failures still come back soon. SQS counts in whole seconds.
        let processing = 300;
        let retry_after = i32::try_from(options.visibility_timeout.as_secs()).unwrap_or(0);
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let received = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .visibility_timeout(processing)
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .send()
                    .await;
                let messages = match received {
                    Ok(out) => out.messages.unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if messages.is_empty() {
                    continue;
                }
                let (client, url, worker) = (client.clone(), url.clone(), worker.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let handles: HashMap<String, String> = messages
                        .iter()
                        .filter_map(|m| Some((m.message_id.clone()?, m.receipt_handle.clone()?)))
                        .collect();
                    let response = worker.handle(event_of(&url, messages)).await;
                    let (failed, processed): (Vec<_>, Vec<_>) =
                        handles.into_iter().partition(|(id, _)| {
                            response
                                .batch_item_failures
                                .iter()
                                .any(|f| &f.item_identifier == id)
                        });
                    for (_, receipt) in failed {
                        let retry = client
                            .change_message_visibility()
                            .queue_url(&url)
                            .receipt_handle(receipt)
                            .visibility_timeout(retry_after)
                            .send()
                            .await;
                        if let Err(e) = retry {
                            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "visibility change failed");
                        }
                    }
                    let processed: Vec<DeleteMessageBatchRequestEntry> = processed
                        .into_iter()
                        .filter_map(|(id, receipt)| {
                            DeleteMessageBatchRequestEntry::builder()
                                .id(id)
                                .receipt_handle(receipt)
                                .build()
                                .ok()
                        })
                        .collect();
                    if processed.is_empty() {
                        return;
                    }
                    if let Err(e) = client
                        .delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(processed))
                        .send()
                        .await
                    {
                        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed");
                    }
                });
            }
        });
        Self { task }
    }
}

/// The SQS event Lambda would build from these received messages.
fn event_of(url: &str, messages: Vec<Message>) -> SqsEvent {
    let queue = url.rsplit('/').next().unwrap_or("tally-render");
    let mut event = SqsEvent::default();
    event.records = messages
        .into_iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id;
            record.receipt_handle = m.receipt_handle;
            record.body = m.body;
            record.md5_of_body = m.md5_of_body;
            record.attributes = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn =
                Some(format!("arn:aws:sqs:{LOCAL_REGION}:000000000000:{queue}"));
            record.aws_region = Some(LOCAL_REGION.into());
            record
        })
        .collect();
    event
}
