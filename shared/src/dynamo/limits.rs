//! [`RateCounter`] for [`DynamoStore`]: one counter item per scope and rate-limit window.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::DynamoStore;
use super::items::BackoffItem;
use super::keys::{Key, TTL};
use super::ops::{internal, num};
use crate::ports::{Failures, RateCounter, StoreError, StoreResult};

#[async_trait]
impl RateCounter for DynamoStore {
    async fn hit(&self, scope: &str, window_start: i64, window_seconds: i64) -> StoreResult<u64> {
        let update = self
            .update(&Key::Rate(scope.to_owned(), window_start))
            .update_expression("ADD hits :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":one", num(1))
            // Kept an hour past the window; reads never look at old windows anyway.
            .expression_attribute_values(":ttl", num(window_start + window_seconds + 3_600))
            .return_values(ReturnValue::UpdatedNew);
        let out = self.send_update(update).await?;
        match out.attributes.as_ref().and_then(|a| a.get("hits")) {
            Some(AttributeValue::N(n)) => n.parse().map_err(internal),
            _ => Err(StoreError::Internal("rate counter without a count".into())),
        }
    }

    async fn take(
        &self,
        scope: &str,
        window_start: i64,
        window_seconds: i64,
        amount: u64,
        limit: u64,
    ) -> StoreResult<Option<u64>> {
        let Some(room) = limit.checked_sub(amount) else {
            return Ok(None);
        };
        let update = self
            .update(&Key::Rate(scope.to_owned(), window_start))
            .update_expression("ADD hits :amount SET #ttl = if_not_exists(#ttl, :ttl)")
            // The whole amount fits, or nothing is taken.
            .condition_expression("attribute_not_exists(hits) OR hits <= :room")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":amount", AttributeValue::N(amount.to_string()))
            .expression_attribute_values(":room", AttributeValue::N(room.to_string()))
            .expression_attribute_values(":ttl", num(window_start + window_seconds + 3_600))
            .return_values(ReturnValue::UpdatedNew);
        let out = match self.send_update(update).await {
            Ok(out) => out,
            Err(StoreError::ConditionFailed) => return Ok(None),
            Err(e) => return Err(e),
        };
        match out.attributes.as_ref().and_then(|a| a.get("hits")) {
            Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(internal),
            _ => Err(StoreError::Internal("quota counter without a count".into())),
        }
    }

    async fn failures(&self, scope: &str) -> StoreResult<Failures> {
        let item: Option<BackoffItem> = self.get(&Key::Backoff(scope.to_owned())).await?;
        Ok(item.map_or_else(Failures::default, |i| Failures {
            count: i.failures,
            last: i.last_failure,
        }))
    }

    async fn fail(&self, scope: &str, now: i64, keep: i64) -> StoreResult<u64> {
        let update = self
            .update(&Key::Backoff(scope.to_owned()))
            .update_expression("ADD failures :one SET last_failure = :now, #ttl = :ttl")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":one", num(1))
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":ttl", num(now + keep))
            .return_values(ReturnValue::UpdatedNew);
        let out = self.send_update(update).await?;
        match out.attributes.as_ref().and_then(|a| a.get("failures")) {
            Some(AttributeValue::N(n)) => n.parse().map_err(internal),
            _ => Err(StoreError::Internal("backoff without a count".into())),
        }
    }

    async fn forgive(&self, scope: &str) -> StoreResult<()> {
        // An update rather than a delete, so the role needs no `DeleteItem` on rate items.
        let update = self
            .update(&Key::Backoff(scope.to_owned()))
            .update_expression("REMOVE failures, last_failure");
        self.send_update(update).await.map(|_| ())
    }
}
