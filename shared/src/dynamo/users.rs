//! [`UserStore`] for [`DynamoStore`]: the user's profile and the email marker that makes the
//! address unique and holds the password hash.

use async_trait::async_trait;

use super::DynamoStore;
use super::items::{EmailItem, UserItem};
use super::keys::Key;
use super::ops::Reason;
use crate::domain::{Email, User, UserId};
use crate::ports::{Credentials, StoreError, StoreResult, UserStore};

#[async_trait]
impl UserStore for DynamoStore {
    async fn create_user(&self, user: &User, password_hash: &str) -> StoreResult<()> {
        let email_key = Key::Email(user.email.as_str().to_owned());
        let marker = EmailItem {
            pk: email_key.pk(),
            sk: email_key.sk().into(),
            user_id: user.id,
            password_hash: password_hash.to_owned(),
        };
        let items = vec![self.put_new(&marker)?, self.put_new(&UserItem::new(user))?];
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(c) if c.condition_failed(0) => Err(StoreError::EmailTaken),
            Err(c) if c.any(&Reason::TransactionConflict) => Err(StoreError::Unavailable(
                "registration conflicted with a concurrent one".into(),
            )),
            Err(c) => Err(StoreError::Internal(format!("register cancelled: {c:?}"))),
        }
    }

    async fn credentials(&self, email: &Email) -> StoreResult<Option<Credentials>> {
        let item: Option<EmailItem> = self.get(&Key::Email(email.as_str().to_owned())).await?;
        Ok(item.map(|i| Credentials {
            user_id: i.user_id,
            password_hash: i.password_hash,
        }))
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let item: Option<UserItem> = self.get(&Key::User(id)).await?;
        item.map(|i| {
            Ok(User {
                id: i.id,
                email: Email::parse(&i.email).map_err(|e| StoreError::Internal(e.into()))?,
                created_at: i.created_at,
            })
        })
        .transpose()
    }
}
