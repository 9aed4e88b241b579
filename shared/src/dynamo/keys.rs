//! The only place where a DynamoDB key is spelled. Every item of the single table has a string
//! partition key `PK` and sort key `SK`; polls also carry the `GSI1` keys that list them by
//! owner. Each shape below is one variant, and [`Key::parse`] reads them back.

use std::borrow::Cow;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{FamilyId, GuestId, JobId, PollId, UserId, Voter};

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1_PK: &str = "GSI1PK";
pub const GSI1_SK: &str = "GSI1SK";
/// The attribute DynamoDB's TTL deletes by (epoch seconds). Deletion lags up to 48 h, so every
/// read that cares filters on its own expiry field too.
pub const TTL: &str = "ttl";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `USER#<id>` / `USER`: the profile.
    User(UserId),
    /// `EMAIL#<email>` / `EMAIL`: the uniqueness marker, which also holds the password hash.
    Email(String),
    /// `REFRESH#<sha256>` / `REFRESH`: one refresh token, by hash.
    Refresh(String),
    /// `FAMILY#<id>` / `FAMILY`: exists only once a refresh-token family is revoked.
    Family(FamilyId),
    /// `SESSIONS#<user>` / `SESSIONS`: exists only once the user signed out everywhere; holds
    /// the time before which every family of the user is revoked.
    Sessions(UserId),
    /// `POLLREQ#<user>#<sha256 of Idempotency-Key>` / `POLLREQ`: the poll a creating request
    /// made, for 24 hours.
    PollRequest(UserId, String),
    /// `POLL#<id>` / `POLL`: the poll.
    Poll(PollId),
    /// `TALLY#<id>` / `TALLY`: the poll's counts, written by the count function from the
    /// table's stream, with one checkpoint per stream shard.
    Tally(PollId),
    /// `BALLOT#<poll>#<voter>` / `BALLOT`: one voter's ballot; its existence is the guard.
    Ballot(PollId, String),
    /// `JOB#<id>` / `JOB`: a render job and its progress counters.
    Job(JobId),
    /// `JOB#<id>#K<n>` / `CHUNK`: chunk n of a job has been counted (exists at most once).
    JobChunk(JobId, u32),
    /// `JOBREQ#<fingerprint>` / `JOBREQ`: the job a request made, for 24 hours.
    JobRequest(String),
    /// `INVITE#<sha256 of token>` / `INVITE`: one card of a guest (a token and its state).
    Invite(String),
    /// `GUEST#<poll>` / `G#<guest>`: a guest of the poll's list. One partition per poll, so
    /// the list is read in pages by one strongly consistent query.
    Guest(PollId, GuestId),
    /// `GUEST#<poll>` / `LIST`: the list's counts (guests, opened) and the time of its last
    /// card job, which tells the guests added since.
    GuestList(PollId),
    /// `VOTERS#<poll>` / `B#<shard>#<first sequence number>#<n>`: who cast the ballots of
    /// one counted batch in the poll, other than its guests (signed-in users, and invites
    /// from before guest lists): ballots are keyed by voter, so this is how a deleted poll's
    /// ballots are found. Written by the count function, read by the purge.
    Voters(PollId, String),
    /// `RATE#<scope>#<window start>` / `RATE`: requests counted in one rate-limit window.
    Rate(String, i64),
    /// `RATE#<scope>` / `BACKOFF`: failures counted against a scope, and when the last was.
    Backoff(String),
    /// `INFLIGHT#<user>` / `INFLIGHT`: the user's jobs in flight, counted (`n`) with one
    /// marker attribute per job holding its deadline.
    InFlight(UserId),
}

impl Key {
    pub fn ballot(poll: PollId, voter: &Voter) -> Self {
        Self::Ballot(poll, voter.to_string())
    }

    pub fn pk(&self) -> String {
        match self {
            Self::User(id) => format!("USER#{id}"),
            Self::Email(email) => format!("EMAIL#{email}"),
            Self::Refresh(hash) => format!("REFRESH#{hash}"),
            Self::Family(id) => format!("FAMILY#{id}"),
            Self::Sessions(user) => format!("SESSIONS#{user}"),
            Self::PollRequest(user, key) => format!("POLLREQ#{user}#{key}"),
            Self::Poll(id) => format!("POLL#{id}"),
            Self::Tally(id) => format!("TALLY#{id}"),
            Self::Ballot(poll, voter) => format!("BALLOT#{poll}#{voter}"),
            Self::Job(id) => format!("JOB#{id}"),
            Self::JobChunk(id, n) => format!("JOB#{id}#K{n}"),
            Self::JobRequest(fingerprint) => format!("JOBREQ#{fingerprint}"),
            Self::Invite(hash) => format!("INVITE#{hash}"),
            Self::Guest(poll, _) | Self::GuestList(poll) => format!("GUEST#{poll}"),
            Self::Voters(poll, _) => format!("VOTERS#{poll}"),
            Self::Rate(scope, window) => format!("RATE#{scope}#{window}"),
            Self::Backoff(scope) => format!("RATE#{scope}"),
            Self::InFlight(user) => format!("INFLIGHT#{user}"),
        }
    }

    /// The sort key: fixed per item kind, except a guest's, which names the guest (a poll's
    /// guests share its partition), and a voter record's, which names its batch.
    pub fn sk(&self) -> Cow<'static, str> {
        let fixed = match self {
            Self::User(_) => "USER",
            Self::Email(_) => "EMAIL",
            Self::Refresh(_) => "REFRESH",
            Self::Family(_) => "FAMILY",
            Self::Sessions(_) => "SESSIONS",
            Self::PollRequest(..) => "POLLREQ",
            Self::Poll(_) => "POLL",
            Self::Tally(_) => "TALLY",
            Self::Ballot(..) => "BALLOT",
            Self::Job(_) => "JOB",
            Self::JobChunk(..) => "CHUNK",
            Self::JobRequest(_) => "JOBREQ",
            Self::Invite(_) => "INVITE",
            Self::Guest(_, guest) => return Cow::Owned(format!("G#{guest}")),
            Self::GuestList(_) => "LIST",
            Self::Voters(_, batch) => return Cow::Owned(format!("B#{batch}")),
            Self::Rate(..) => "RATE",
            Self::Backoff(_) => "BACKOFF",
            Self::InFlight(_) => "INFLIGHT",
        };
        Cow::Borrowed(fixed)
    }

    /// The key as the SDK wants it for `GetItem`, `DeleteItem`, `UpdateItem`.
    pub fn item_key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk())),
            (SK.to_owned(), AttributeValue::S(self.sk().into_owned())),
        ])
    }

    /// Reads back the key of an item the store returned; `None` for anything this module
    /// did not write.
    pub fn of_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        match (item.get(PK), item.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Self::parse(pk, sk),
            _ => None,
        }
    }

    /// Reads a key back from its attributes; `None` for anything this module did not write.
    pub fn parse(pk: &str, sk: &str) -> Option<Self> {
        let (prefix, rest) = pk.split_once('#')?;
        let key = match (prefix, sk) {
            ("USER", "USER") => Self::User(rest.parse().ok()?),
            ("EMAIL", "EMAIL") => Self::Email(rest.to_owned()),
            ("REFRESH", "REFRESH") => Self::Refresh(rest.to_owned()),
            ("FAMILY", "FAMILY") => Self::Family(rest.parse().ok()?),
            ("SESSIONS", "SESSIONS") => Self::Sessions(rest.parse().ok()?),
            ("POLLREQ", "POLLREQ") => {
                let (user, key) = rest.split_once('#')?;
                Self::PollRequest(user.parse().ok()?, key.to_owned())
            }
            ("POLL", "POLL") => Self::Poll(rest.parse().ok()?),
            ("TALLY", "TALLY") => Self::Tally(rest.parse().ok()?),
            ("BALLOT", "BALLOT") => {
                let (poll, voter) = rest.split_once('#')?;
                Self::Ballot(poll.parse().ok()?, voter.to_owned())
            }
            ("JOB", "JOB") => Self::Job(rest.parse().ok()?),
            ("JOB", "CHUNK") => {
                let (id, n) = rest.split_once("#K")?;
                Self::JobChunk(id.parse().ok()?, n.parse().ok()?)
            }
            ("JOBREQ", "JOBREQ") => Self::JobRequest(rest.to_owned()),
            ("INVITE", "INVITE") => Self::Invite(rest.to_owned()),
            ("RATE", "BACKOFF") => Self::Backoff(rest.to_owned()),
            ("GUEST", "LIST") => Self::GuestList(rest.parse().ok()?),
            ("GUEST", sk) if sk.starts_with("G#") => {
                Self::Guest(rest.parse().ok()?, GuestId::parse(&sk[2..])?)
            }
            ("INFLIGHT", "INFLIGHT") => Self::InFlight(rest.parse().ok()?),
            ("VOTERS", sk) if sk.starts_with("B#") => {
                Self::Voters(rest.parse().ok()?, sk[2..].to_owned())
            }
            ("RATE", "RATE") => {
                let (scope, window) = rest.rsplit_once('#')?;
                Self::Rate(scope.to_owned(), window.parse().ok()?)
            }
            _ => return None,
        };
        (key.pk() == pk && key.sk() == sk).then_some(key)
    }
}

/// The attribute of an in-flight item that marks job `job` (its value: the job's deadline,
/// epoch ms). Attributes rather than a map, because `SET jobs.#id` fails on an item that has
/// no map yet, and creating the map in the same expression is an overlapping path.
pub fn in_flight_marker(job: JobId) -> String {
    format!("J{job}")
}

/// The job an in-flight item's attribute marks, if it is a marker.
pub fn in_flight_job(attribute: &str) -> Option<JobId> {
    attribute.strip_prefix('J')?.parse().ok()
}

/// The owner index: `OWNER#<user>` / `<created ms, zero-padded>#<poll>`, so a query on one
/// owner returns their polls in creation order.
pub fn owner_index(owner: UserId, created_ms: i64, poll: PollId) -> (String, String) {
    (format!("OWNER#{owner}"), format!("{created_ms:015}#{poll}"))
}

/// A job's place on the poll-jobs index (`GSI1`, shared with the owner index under a
/// partition prefix of its own): its poll's jobs, by creation time.
pub fn poll_jobs_index(poll: PollId, created_ms: i64, job: JobId) -> (String, String) {
    (
        format!("POLLJOBS#{poll}"),
        format!("{created_ms:015}#{job}"),
    )
}

/// Where a query of a poll's jobs resumes: the last job of the previous page, as
/// `ExclusiveStartKey` wants it.
pub fn poll_jobs_index_start(
    poll: PollId,
    created_ms: i64,
    job: JobId,
) -> HashMap<String, AttributeValue> {
    let (gsi_pk, gsi_sk) = poll_jobs_index(poll, created_ms, job);
    let mut key = Key::Job(job).item_key();
    key.insert(GSI1_PK.to_owned(), AttributeValue::S(gsi_pk));
    key.insert(GSI1_SK.to_owned(), AttributeValue::S(gsi_sk));
    key
}

/// Where a query of the owner index resumes: the full key (index and table) of the last poll
/// of the previous page, as `ExclusiveStartKey` wants it.
pub fn owner_index_start(
    owner: UserId,
    created_ms: i64,
    poll: PollId,
) -> HashMap<String, AttributeValue> {
    let (gsi_pk, gsi_sk) = owner_index(owner, created_ms, poll);
    let mut key = Key::Poll(poll).item_key();
    key.insert(GSI1_PK.to_owned(), AttributeValue::S(gsi_pk));
    key.insert(GSI1_SK.to_owned(), AttributeValue::S(gsi_sk));
    key
}

/// The prefix of a partition key that IAM's `dynamodb:LeadingKeys` conditions name: the text
/// up to and including the first `#` (`BALLOT#` of `BALLOT#<poll>#<voter>`); a key without one is its
/// own prefix.
pub fn prefix_of(pk: &str) -> &str {
    pk.find('#').map_or(pk, |i| &pk[..=i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InviteHash;

    #[test]
    fn every_key_shape_round_trips() {
        let poll = PollId::new();
        let keys = [
            Key::User(UserId::new()),
            Key::Email("ann@example.com".into()),
            Key::Refresh("abc123".into()),
            Key::Family(FamilyId::new()),
            Key::Sessions(UserId::new()),
            Key::PollRequest(UserId::new(), "a2V5LWhhc2g".into()),
            Key::Poll(poll),
            Key::Tally(poll),
            Key::ballot(poll, &Voter::User(UserId::new())),
            Key::ballot(poll, &Voter::Invite(InviteHash::from_stored("aGFzaA"))),
            Key::Job(JobId::new()),
            Key::JobChunk(JobId::new(), 42),
            Key::JobRequest("ZmluZ2VycHJpbnQ".into()),
            Key::Invite("dG9rZW4taGFzaA".into()),
            Key::Guest(poll, GuestId::from_stored("AAAAAAAAAAAAAAAAAAAAAA")),
            Key::GuestList(poll),
            Key::ballot(
                poll,
                &Voter::Guest(GuestId::from_stored("AAAAAAAAAAAAAAAAAAAAAA")),
            ),
            Key::Rate("login-ip#203.0.113.9".into(), 1_795_845_600),
            Key::Backoff("login#ann@example.com#203.0.113.9".into()),
            Key::InFlight(UserId::new()),
            Key::Voters(poll, "shard-1#0000000042#0".into()),
        ];
        for key in keys {
            assert_eq!(
                Key::parse(&key.pk(), &key.sk()),
                Some(key.clone()),
                "{key:?}"
            );
            assert_eq!(Key::of_item(&key.item_key()), Some(key.clone()), "{key:?}");
        }
    }

    #[test]
    fn a_prefix_ends_at_the_first_hash() {
        let poll = PollId::new();
        assert_eq!(prefix_of(&Key::Tally(poll).pk()), "TALLY#");
        assert_eq!(prefix_of(&Key::Rate("a#b".into(), 1).pk()), "RATE#");
        assert_eq!(prefix_of(&owner_index(UserId::new(), 1, poll).0), "OWNER#");
        assert_eq!(prefix_of("plain"), "plain");
    }

    #[test]
    fn foreign_keys_are_not_parsed() {
        assert_eq!(Key::parse("POLL#nope", "POLL"), None);
        assert_eq!(Key::parse("USER#x", "POLL"), None);
        assert_eq!(Key::parse("nothing", "USER"), None);
        let numeric = HashMap::from([
            (PK.to_owned(), AttributeValue::N("1".into())),
            (SK.to_owned(), AttributeValue::S("USER".into())),
        ]);
        assert_eq!(Key::of_item(&numeric), None);
    }

    #[test]
    fn the_owner_index_sorts_by_creation_time() {
        let owner = UserId::new();
        let (_, early) = owner_index(owner, 999, PollId::new());
        let (_, late) = owner_index(owner, 1_000, PollId::new());
        assert!(early < late);
    }
}
