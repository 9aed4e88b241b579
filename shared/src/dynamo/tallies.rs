//! [`TallyStore`] for [`DynamoStore`]: the count function's one conditional update per poll per
//! batch, the tally item read back as a [`Tally`], and the ballots read out of stream records.
//!
//! A checkpoint is stored as `<padded sequence number>|<newest vote, ms>|<written, ms>` under
//! its shard's attribute. The padded sequence number comes first and has a fixed width, so the
//! condition `#cp < :first` compares the sequence numbers as strings compare, which is how
//! padded decimal numbers compare.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::OffsetDateTime;

use super::DynamoStore;
use super::items::{BallotItem, VotersItem, from_unix_ms, tally, unix_ms};
use super::keys::{self, Key};
use super::ops::{Item, internal, num, to_item};
use crate::domain::{OptionId, PollId, Tally, Voter};
use crate::ports::{
    Added, Checkpoint, Lease, PublishLease, SequenceNumber, StoreResult, TallyDelta, TallyStore,
    VOTERS_PER_RECORD,
};

/// How long a checkpoint guards anything. The event source mapping delivers no record older
/// than its `MaximumRecordAgeInSeconds` (one hour, `template.yaml`), and a checkpoint written
/// at `w` covers records written before `w`, so no record it guards arrives after `w` + 1 h;
/// twice that is the margin. Pruning matters because DynamoDB rolls a stream's shards over
/// every few hours, and every checkpoint kept makes each update of the tally cost more.
pub const CHECKPOINT_LIFETIME: time::Duration = time::Duration::hours(2);

/// The update's condition: the shard's checkpoint is absent or below the batch's first record.
const NOT_YET_COUNTED: &str = "attribute_not_exists(#cp) OR #cp < :first";

#[async_trait]
impl TallyStore for DynamoStore {
    async fn add(
        &self,
        poll: PollId,
        shard: &str,
        first: &SequenceNumber,
        at: &Checkpoint,
        delta: &TallyDelta,
        prune: &[String],
    ) -> StoreResult<Added> {
        let checkpoint_attribute = tally::checkpoint_attribute(shard);
        let mut names = HashMap::from([
            ("#cp".to_owned(), checkpoint_attribute.clone()),
            ("#ballots".to_owned(), tally::BALLOTS.to_owned()),
            ("#guests".to_owned(), tally::GUEST_BALLOTS.to_owned()),
        ]);
        let mut values = HashMap::from([
            (
                ":first".to_owned(),
                AttributeValue::S(first.as_str().to_owned()),
            ),
            (":at".to_owned(), AttributeValue::S(encode(at))),
            (":ballots".to_owned(), num(delta.ballots)),
            (":guests".to_owned(), num(delta.guest_ballots)),
        ]);
        let mut adds = vec!["#ballots :ballots".to_owned(), "#guests :guests".to_owned()];
        for (i, (option, n)) in delta.per_option.iter().enumerate() {
            names.insert(format!("#v{i}"), tally::vote_attribute(option.as_str()));
            values.insert(format!(":v{i}"), num(*n));
            adds.push(format!("#v{i} :v{i}"));
        }
        let mut expression = format!("SET #cp = :at ADD {}", adds.join(", "));
        let removed: Vec<String> = prune
            .iter()
            .filter(|s| s.as_str() != shard)
            .enumerate()
            .map(|(i, s)| {
                names.insert(format!("#p{i}"), tally::checkpoint_attribute(s));
                format!("#p{i}")
            })
            .collect();
        if !removed.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removed.join(", ")));
        }
        let update = self
            .update(&Key::Tally(poll))
            .update_expression(expression)
            .condition_expression(NOT_YET_COUNTED)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            // The item as it stood tells which other shards' checkpoints have gone stale; a
            // write's returned values cost no extra capacity.
            .return_values(ReturnValue::AllOld);
        match self.update_unless(update).await? {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let stale = checkpoints(&old)
                    .filter(|(s, c)| *s != shard && at.written - c.written > CHECKPOINT_LIFETIME)
                    .map(|(s, _)| s.to_owned())
                    .collect();
                Ok(Added::Counted {
                    stale,
                    tally: after(&old, delta, at),
                })
            }
            // The condition fails only where a checkpoint stands, so there is an item, and
            // DynamoDB returns it (`ALL_OLD`): no read is needed to learn the checkpoint.
            Err(old) => {
                let old = old.unwrap_or_default();
                checkpoints(&old)
                    .find(|(s, _)| *s == shard)
                    .map(|(_, c)| Added::Behind(c.last))
                    .ok_or_else(|| internal("tally update refused without a checkpoint"))
            }
        }
    }

    async fn record_voters(
        &self,
        poll: PollId,
        shard: &str,
        first: &SequenceNumber,
        voters: &[Voter],
    ) -> StoreResult<()> {
        self.put_voters(poll, shard, first, voters).await
    }
}

impl DynamoStore {
    /// [`TallyStore::record_voters`]: plain puts, since a redelivery writes the same items.
    pub(super) async fn put_voters(
        &self,
        poll: PollId,
        shard: &str,
        first: &SequenceNumber,
        voters: &[Voter],
    ) -> StoreResult<()> {
        for (n, chunk) in voters.chunks(VOTERS_PER_RECORD).enumerate() {
            let key = Key::Voters(poll, format!("{shard}#{}#{n}", first.as_str()));
            let item = VotersItem {
                pk: key.pk(),
                sk: key.sk().into_owned(),
                voters: chunk.iter().map(ToString::to_string).collect(),
            };
            // No condition: a redelivered batch puts the same record again.
            if self
                .put_unless_taken(self.put_item(to_item(&item)?))
                .await?
                .is_err()
            {
                return Err(internal("an unconditional put was refused"));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PublishLease for DynamoStore {
    async fn claim(
        &self,
        poll: PollId,
        total: u64,
        now: OffsetDateTime,
        pace: time::Duration,
    ) -> StoreResult<Lease> {
        let update = self
            .update(&Key::Tally(poll))
            .update_expression("SET #at = :now, #total = :total")
            .condition_expression(
                "(attribute_not_exists(#at) OR #at <= :due) \
                 AND (attribute_not_exists(#total) OR #total < :total)",
            )
            .expression_attribute_names("#at", tally::LIVE_AT)
            .expression_attribute_names("#total", tally::LIVE_TOTAL)
            .expression_attribute_values(":now", num(unix_ms(now)))
            .expression_attribute_values(":due", num(unix_ms(now - pace)))
            .expression_attribute_values(":total", num(total));
        match self.update_unless(update).await? {
            Ok(_) => Ok(Lease::Granted),
            Err(old) => {
                let old = old.unwrap_or_default();
                let number = |name: &str| match old.get(name) {
                    Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
                    _ => None,
                };
                if number(tally::LIVE_TOTAL).is_some_and(|t| t >= total) {
                    return Ok(Lease::Superseded);
                }
                let at = number(tally::LIVE_AT)
                    .and_then(|ms| i64::try_from(ms).ok())
                    .map_or(now, from_unix_ms);
                Ok(Lease::HeldUntil(at + pace))
            }
        }
    }
}

/// The tally item as the domain sees it (an absent item is an empty tally).
pub(super) fn tally_of(item: &Item) -> Tally {
    let mut tally = Tally::default();
    let mut guest_ballots = 0;
    for (name, value) in item {
        let AttributeValue::N(n) = value else {
            continue;
        };
        if name == tally::BALLOTS {
            tally.ballots = n.parse().unwrap_or(0);
        } else if name == tally::GUEST_BALLOTS {
            guest_ballots = n.parse().unwrap_or(0);
        } else if let Some(option) = tally::option_of(name).and_then(|o| o.parse::<OptionId>().ok())
        {
            tally.per_option.insert(option, n.parse().unwrap_or(0));
        }
    }
    // Exact only on a tally that was counting guests from its first ballot (made with the
    // mark): on an older one the figure would miss the ballots counted before.
    if matches!(
        item.get(tally::GUESTS_COUNTED),
        Some(AttributeValue::Bool(true))
    ) {
        tally.guest_ballots = Some(guest_ballots);
    }
    for (_, checkpoint) in checkpoints(item) {
        tally.counted_through = tally.counted_through.max(Some(checkpoint.newest_vote));
        tally.counted_at = tally.counted_at.max(Some(checkpoint.written));
    }
    tally
}

/// The tally an update left: the item as it stood (`ALL_OLD`, read atomically with the
/// write) plus what the update added, with its checkpoint.
fn after(old: &Item, delta: &TallyDelta, at: &Checkpoint) -> Tally {
    let mut tally = tally_of(old);
    tally.ballots += delta.ballots;
    for (option, n) in &delta.per_option {
        *tally.per_option.entry(option.clone()).or_insert(0) += n;
    }
    tally.counted_through = tally.counted_through.max(Some(at.newest_vote));
    tally.counted_at = tally.counted_at.max(Some(at.written));
    tally
}

/// Every shard's checkpoint stored on a tally item.
fn checkpoints(item: &Item) -> impl Iterator<Item = (&str, Checkpoint)> {
    item.iter().filter_map(|(name, value)| {
        let shard = tally::shard_of(name)?;
        let AttributeValue::S(text) = value else {
            return None;
        };
        Some((shard, decode(text)?))
    })
}

fn encode(c: &Checkpoint) -> String {
    format!(
        "{}|{}|{}",
        c.last.as_str(),
        unix_ms(c.newest_vote),
        unix_ms(c.written)
    )
}

fn decode(text: &str) -> Option<Checkpoint> {
    let mut parts = text.split('|');
    let last = SequenceNumber::parse(parts.next()?)?;
    let newest_vote = from_unix_ms(parts.next()?.parse().ok()?);
    let written = from_unix_ms(parts.next()?.parse().ok()?);
    Some(Checkpoint {
        last,
        newest_vote,
        written,
    })
}

/// A ballot as a stream record carries it: what counting needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBallot {
    pub poll: PollId,
    pub choices: Vec<OptionId>,
    pub voted_at: OffsetDateTime,
    pub sequence: SequenceNumber,
    pub voter: Voter,
}

impl StreamBallot {
    /// Cast by a guest of the poll's list, for the list's `voted` count.
    pub fn by_guest(&self) -> bool {
        matches!(self.voter, Voter::Guest(_))
    }
}

/// The new ballot a stream record inserted; `None` for any other record (another item, a
/// modification or removal), which the count function skips. A ballot record that does not
/// read as one is an error: it would be a ballot the API accepted and nobody counted.
pub fn stream_ballot(record: &EventRecord) -> StoreResult<Option<StreamBallot>> {
    if record.event_name != "INSERT" {
        return Ok(None);
    }
    let pk = match record.change.keys.get(keys::PK) {
        Some(serde_dynamo::AttributeValue::S(pk)) => pk.as_str(),
        _ => return Ok(None),
    };
    let sk = match record.change.keys.get(keys::SK) {
        Some(serde_dynamo::AttributeValue::S(sk)) => sk.as_str(),
        _ => return Ok(None),
    };
    let Some(Key::Ballot(poll, voter)) = Key::parse(pk, sk) else {
        return Ok(None);
    };
    let item: BallotItem =
        serde_dynamo::from_item(record.change.new_image.clone()).map_err(internal)?;
    let sequence = record
        .change
        .sequence_number
        .as_deref()
        .and_then(SequenceNumber::parse)
        .ok_or_else(|| internal("a ballot record without a sequence number"))?;
    Ok(Some(StreamBallot {
        poll,
        choices: item.choices,
        voted_at: item.voted_at,
        sequence,
        voter: Voter::parse(&voter)
            .ok_or_else(|| internal("a ballot record whose key names no voter"))?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(seq: &str, ms: i64) -> Checkpoint {
        Checkpoint {
            last: SequenceNumber::parse(seq).unwrap_or_else(|| panic!("{seq}")),
            newest_vote: from_unix_ms(ms - 5),
            written: from_unix_ms(ms),
        }
    }

    #[test]
    fn a_stored_checkpoint_reads_back_and_compares_by_its_sequence_number() {
        let low = encode(&checkpoint("999", 2_000));
        let high = SequenceNumber::parse("1000").unwrap_or_else(|| panic!());
        assert_eq!(decode(&low), Some(checkpoint("999", 2_000)));
        // The stored text (with its times) still sorts below a later first record, and not
        // below the record it ends at.
        assert!(low.as_str() < high.as_str());
        assert!(
            low.as_str()
                >= SequenceNumber::parse("999")
                    .unwrap_or_else(|| panic!())
                    .as_str()
        );
    }

    #[test]
    fn the_tally_reads_counts_and_progress() {
        let item = HashMap::from([
            (tally::BALLOTS.to_owned(), num(3)),
            (tally::vote_attribute("o1"), num(2)),
            (tally::vote_attribute("o2"), num(1)),
            (
                tally::checkpoint_attribute("shard-a"),
                AttributeValue::S(encode(&checkpoint("5", 1_000))),
            ),
            (
                tally::checkpoint_attribute("shard-b"),
                AttributeValue::S(encode(&checkpoint("7", 3_000))),
            ),
        ]);
        let t = tally_of(&item);
        assert_eq!(t.ballots, 3);
        assert_eq!(t.per_option.get(&OptionId::for_index(0)), Some(&2));
        assert_eq!(t.per_option.get(&OptionId::for_index(1)), Some(&1));
        assert_eq!(t.counted_at, Some(from_unix_ms(3_000)));
        assert_eq!(t.counted_through, Some(from_unix_ms(2_995)));
    }
}
