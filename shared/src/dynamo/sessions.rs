//! [`SessionStore`] for [`DynamoStore`]: refresh tokens (by hash), their rotation, and the
//! revocation of a token family or of every family of a user.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};
use time::OffsetDateTime;

use super::DynamoStore;
use super::items::{RefreshItem, unix_ms};
use super::keys::{Key, TTL};
use super::ops::{NEW_ITEM, internal, num, to_item, touching, updating};
use crate::domain::{FamilyId, UserId};
use crate::ports::{RefreshRecord, SessionStore, StoreError, StoreResult};

#[async_trait]
impl SessionStore for DynamoStore {
    async fn put_refresh(&self, record: &RefreshRecord) -> StoreResult<()> {
        let put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(to_item(&RefreshItem::new(record))?))
            .condition_expression(NEW_ITEM);
        let touches = touching("PutItem", "PutItem", put.get_item());
        self.send(touches, put.send()).await?;
        Ok(())
    }

    async fn refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
        let item: Option<RefreshItem> = self.get(&Key::Refresh(token_hash.to_owned())).await?;
        Ok(item.map(|i| i.into_record(token_hash.to_owned())))
    }

    async fn rotate(&self, old_hash: &str, new: &RefreshRecord) -> StoreResult<()> {
        let spend = self
            .update_in_transaction(&Key::Refresh(old_hash.to_owned()))
            .update_expression("SET used = :true")
            .condition_expression("used = :false")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        let family_alive = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::Family(new.family).item_key()))
            .condition_expression("attribute_not_exists(revoked)")
            .build()
            .map_err(internal)?;
        // A logout-all leaves a marker with the time before which the user's families are
        // revoked; a family started later (a login after it) is not affected.
        let user_alive = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::Sessions(new.user_id).item_key()))
            .condition_expression(
                "attribute_not_exists(revoked_before_ms) OR revoked_before_ms < :started",
            )
            .expression_attribute_values(":started", num(unix_ms(new.family_started)))
            .build()
            .map_err(internal)?;
        let items = vec![
            updating(spend)?,
            TransactWriteItem::builder()
                .condition_check(family_alive)
                .build(),
            TransactWriteItem::builder()
                .condition_check(user_alive)
                .build(),
            self.put_new(&RefreshItem::new(new))?,
        ];
        // Any cancellation means the token was spent (by a concurrent rotation too) or its
        // family revoked: either way this rotation must not happen.
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::ConditionFailed),
        }
    }

    async fn revoke_family(&self, family: FamilyId, keep_until: OffsetDateTime) -> StoreResult<()> {
        // Swept by TTL after `keep_until`, when no token of the family can be alive.
        let keep_until = keep_until.unix_timestamp();
        let update = self
            .update(&Key::Family(family))
            .update_expression("SET revoked = :true, #ttl = :ttl")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":ttl", num(keep_until));
        self.send_update(update).await?;
        Ok(())
    }

    async fn revoke_user_sessions(
        &self,
        user: UserId,
        before: OffsetDateTime,
        keep_until: OffsetDateTime,
    ) -> StoreResult<()> {
        // Swept by TTL after `keep_until`, when every family that started before `before`
        // has expired. A later logout-all moves both forward; never back, so a delayed
        // retry of an older one cannot revive families.
        let update = self
            .update(&Key::Sessions(user))
            .update_expression("SET revoked_before_ms = :before, #ttl = :ttl")
            .condition_expression(
                "attribute_not_exists(revoked_before_ms) OR revoked_before_ms < :before",
            )
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":before", num(unix_ms(before)))
            .expression_attribute_values(":ttl", num(keep_until.unix_timestamp()));
        // A failed condition means a later logout-all is already recorded: nothing to do.
        self.update_if(update).await?;
        Ok(())
    }
}
