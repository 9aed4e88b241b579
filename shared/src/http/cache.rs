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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::domain::NewPoll;

    /// One poll in memory, counting the reads that reach it.
    #[derive(Debug)]
    struct OnePoll {
        poll: Mutex<Poll>,
        reads: AtomicU64,
    }

    #[async_trait]
    impl PollStore for OnePoll {
        async fn create_poll(
            &self,
            _: &Poll,
            _: Option<&CreateRequest>,
            _: OffsetDateTime,
        ) -> StoreResult<PollCreated> {
            Ok(PollCreated::New)
        }
        async fn poll(&self, _: PollId) -> StoreResult<Option<Poll>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(
                self.poll
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ))
        }
        async fn polls_by_owner(
            &self,
            _: UserId,
            _: u16,
            _: Option<&PollCursor>,
        ) -> StoreResult<Page<Poll>> {
            Ok(Page {
                items: Vec::new(),
                next: None,
            })
        }
        async fn update_poll(&self, _: &Poll, next: &Poll, _: bool) -> StoreResult<()> {
            *self.poll.lock().unwrap_or_else(PoisonError::into_inner) = next.clone();
            Ok(())
        }
        async fn delete_poll(&self, _: &Poll) -> StoreResult<()> {
            Ok(())
        }
    }

    fn setup() -> (Arc<OnePoll>, PollCache, ManualClock, Poll) {
        let clock = ManualClock::new();
        clock.freeze();
        let now = clock.now();
        let poll = NewPoll::parse(
            "q",
            vec!["a".into(), "b".into()],
            None,
            None,
            None,
            None,
            now,
        )
        .map(|p| p.into_poll(PollId::new(), UserId::new(), now))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let store = Arc::new(OnePoll {
            poll: Mutex::new(poll.clone()),
            reads: AtomicU64::new(0),
        });
        let cache = PollCache::new(store.clone(), Arc::new(clock.clone()));
        (store, cache, clock, poll)
    }

    fn reads(store: &OnePoll) -> u64 {
        store.reads.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_poll_is_read_once_per_lifetime() {
        let (store, cache, clock, poll) = setup();
        for _ in 0..100 {
            assert!(cache.cached(poll.id).await.ok().flatten().is_some());
        }
        assert_eq!(reads(&store), 1);
        clock.advance(POLL_CACHE_TTL - Duration::milliseconds(1));
        let _ = cache.cached(poll.id).await;
        assert_eq!(
            reads(&store),
            1,
            "still fresh just before the lifetime ends"
        );
        clock.advance(Duration::milliseconds(1));
        let _ = cache.cached(poll.id).await;
        assert_eq!(reads(&store), 2, "read again once it ends");
    }

    /// A write elsewhere is seen within the lifetime; a write through the cache at once.
    #[tokio::test]
    async fn a_close_reaches_the_cache_within_its_lifetime_or_at_once_through_it() {
        let (store, cache, clock, poll) = setup();
        let _ = cache.cached(poll.id).await;
        let mut closed = poll.clone();
        closed.status = crate::domain::PollStatus::Closed;
        // Another instance's write: this cache still holds the open poll...
        *store.poll.lock().unwrap_or_else(PoisonError::into_inner) = closed.clone();
        let seen = cache.cached(poll.id).await.ok().flatten().map(|p| p.status);
        assert_eq!(seen, Some(crate::domain::PollStatus::Open));
        // ...until its entry expires, at most CLOSE_GRACE later.
        clock.advance(CLOSE_GRACE);
        let seen = cache.cached(poll.id).await.ok().flatten().map(|p| p.status);
        assert_eq!(seen, Some(crate::domain::PollStatus::Closed));

        let mut reopened = closed.clone();
        reopened.status = crate::domain::PollStatus::Open;
        assert!(cache.update_poll(&closed, &reopened, false).await.is_ok());
        let seen = cache.cached(poll.id).await.ok().flatten().map(|p| p.status);
        assert_eq!(
            seen,
            Some(crate::domain::PollStatus::Open),
            "forgotten on write"
        );
    }

    #[tokio::test]
    async fn the_options_lock_is_remembered_per_revision() {
        let (_, cache, _, poll) = setup();
        assert!(!cache.options_locked(poll.id, poll.options_rev));
        cache.mark_locked(poll.id, poll.options_rev);
        assert!(cache.options_locked(poll.id, poll.options_rev));
        assert!(!cache.options_locked(poll.id, poll.options_rev + 1));
        cache.forget(poll.id);
        assert!(
            cache.options_locked(poll.id, poll.options_rev),
            "the lock outlives the entry"
        );
    }
}
