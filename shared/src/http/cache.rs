//! [`PollCache`]: the votes function's polls, read at most once per poll per instance per
//! [`POLL_CACHE_TTL`], so a hot poll's ballots do not each read the poll item (whose one
//! partition takes 3,000 strongly consistent reads a second). A miss reads strongly.
//!
//! What a cached poll may be wrong about is bounded by the lifetime: an owner's close (or any
//! other change) reaches every instance within [`POLL_CACHE_TTL`], so a ballot may be accepted
//! up to that long after a close ([`CLOSE_GRACE`]) and is then counted like any other. A
//! deadline is exact: it is in the cached poll and checked against the clock. Option changes
//! never race a ballot: the first ballot an instance takes locks the options
//! ([`crate::ports::BallotStore::lock_options`]), remembered here per poll and revision.
//!
//! The cache is also a [`PollStore`] whose writes forget the poll they wrote, so where one
//! process plays the polls and the votes functions over one cache (the dev server and tests),
//! the owner's writes are seen at once there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::clock::SharedClock;
use crate::domain::{Poll, PollId, UserId};
use crate::ports::{CreateRequest, Page, PollCreated, PollCursor, PollStore, StoreResult};

/// How long a poll read serves an instance's ballots and results.
pub const POLL_CACHE_TTL: Duration = Duration::seconds(1);

/// How long after the owner's close an instance may still accept a ballot: the cache lifetime.
/// Such a ballot was accepted (201) and is counted; none is accepted later.
pub const CLOSE_GRACE: Duration = POLL_CACHE_TTL;

/// Entries kept at most; past it, expired ones go, then all (a cache, not a store).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone)]
struct Entry {
    poll: Poll,
    read_at: OffsetDateTime,
}

#[derive(Debug, Default)]
struct Entries {
    polls: HashMap<PollId, Entry>,
    /// The options revision this instance has locked, per poll: it stays locked for good.
    locked: HashMap<PollId, u32>,
}

/// A per-instance cache of polls over the [`PollStore`]. Cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct PollCache {
    store: Arc<dyn PollStore>,
    clock: SharedClock,
    // A std mutex: held for a map operation only, never across an await.
    entries: Arc<Mutex<Entries>>,
}

impl PollCache {
    pub fn new(store: Arc<dyn PollStore>, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            entries: Arc::new(Mutex::new(Entries::default())),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The poll, from the cache while its read is younger than [`POLL_CACHE_TTL`], else read
    /// (strongly consistent: one call). Absent polls are not cached.
    pub async fn cached(&self, id: PollId) -> StoreResult<Option<Poll>> {
        let now = self.clock.now();
        if let Some(entry) = self.entries().polls.get(&id) {
            let age = now - entry.read_at;
            if age >= Duration::ZERO && age < POLL_CACHE_TTL {
                return Ok(Some(entry.poll.clone()));
            }
        }
        let poll = self.store.poll(id).await?;
        let mut entries = self.entries();
        match &poll {
            Some(p) => {
                if entries.polls.len() >= MAX_ENTRIES {
                    entries
                        .polls
                        .retain(|_, e| now - e.read_at < POLL_CACHE_TTL);
                    if entries.polls.len() >= MAX_ENTRIES {
                        entries.polls.clear();
                    }
                }
                entries.polls.insert(
                    id,
                    Entry {
                        poll: p.clone(),
                        read_at: now,
                    },
                );
            }
            None => {
                entries.polls.remove(&id);
            }
        }
        Ok(poll)
    }

    /// Whether this instance locked the poll's options at `options_rev`.
    pub fn options_locked(&self, id: PollId, options_rev: u32) -> bool {
        self.entries().locked.get(&id) == Some(&options_rev)
    }

    /// Remembers that the poll's options are locked at `options_rev`.
    pub fn mark_locked(&self, id: PollId, options_rev: u32) {
        let mut entries = self.entries();
        if entries.locked.len() >= MAX_ENTRIES {
            entries.locked.clear();
        }
        entries.locked.insert(id, options_rev);
    }

    /// Drops the cached poll, so the next use reads it.
    pub fn forget(&self, id: PollId) {
        self.entries().polls.remove(&id);
    }
}

#[async_trait]
impl PollStore for PollCache {
    async fn create_poll(
        &self,
        poll: &Poll,
        request: Option<&CreateRequest>,
        now: OffsetDateTime,
    ) -> StoreResult<PollCreated> {
        self.store.create_poll(poll, request, now).await
    }

    /// The owner's reads go to the store: they carry the ETag the owner's writes condition on.
    async fn poll(&self, id: PollId) -> StoreResult<Option<Poll>> {
        self.store.poll(id).await
    }

    async fn polls_by_owner(
        &self,
        owner: UserId,
        limit: u16,
        after: Option<&PollCursor>,
    ) -> StoreResult<Page<Poll>> {
        self.store.polls_by_owner(owner, limit, after).await
    }

    async fn update_poll(
        &self,
        previous: &Poll,
        next: &Poll,
        options_changed: bool,
    ) -> StoreResult<()> {
        let outcome = self
            .store
            .update_poll(previous, next, options_changed)
            .await;
        self.forget(previous.id);
        outcome
    }

    async fn delete_poll(&self, previous: &Poll) -> StoreResult<()> {
        let outcome = self.store.delete_poll(previous).await;
        self.forget(previous.id);
        outcome
    }
}
