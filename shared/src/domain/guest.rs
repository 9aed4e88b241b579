//! A poll's guest list: who is invited, each guest's one live invite, and the key their invite
//! tokens are derived from.
//!
//! A guest's id is derived from the poll and what identifies the guest (their `ref` when the
//! organiser gives one, else their normalised name and email), so adding the same guest twice
//! lands on the same id and a conditional write turns the second add into "already there".
//! A guest's token is HMAC(invite key, poll, guest, generation): the same guest renders the same
//! card every time until reissued (generation + 1), and the key lives outside the table, so
//! nothing stored lets anyone recompute a token.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::job::{GUEST_NAME_MAX_CHARS, GUESTS_MAX, InviteToken};
use super::secret::{SecretKey, base64_url};
use super::{Email, FieldErrors, PollId};

/// The most guests one poll may have. A job renders up to [`GUESTS_MAX`] cards; five such
/// lists per poll leave room for latecomers while bounding what "all guests" reads.
pub const GUESTS_PER_POLL_MAX: u64 = 50_000;
/// The longest organiser's reference for a guest (a row id in their own list).
pub const GUEST_REF_MAX_CHARS: usize = 100;

/// A guest of one poll: 22 base64url characters (128 bits of a SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GuestId(String);

impl GuestId {
    /// The id of the guest that `identity` names in `poll`.
    fn derive(poll: PollId, identity: &str) -> Self {
        let digest = Sha256::digest(format!("{poll}\n{identity}").as_bytes());
        Self(base64_url(&digest[..16]))
    }

    /// An id as a client sent it: `None` unless it has the shape of one.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 22
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(text.to_owned()))
    }

    /// An id read back from storage, where it was written from a derived one.
    pub fn from_stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GuestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A guest as the organiser sends it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A validated guest to add to a poll, with the id it will have there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGuest {
    pub id: GuestId,
    pub name: String,
    pub email: Option<String>,
    pub reference: Option<String>,
}

impl NewGuest {
    /// Validates a list of guests for `poll`, naming each bad entry by its position, and
    /// merges the entries that name the same guest (the first one's fields are kept), so a
    /// list never adds one guest twice.
    pub fn parse_all(poll: PollId, raw: Vec<GuestInput>) -> Result<Vec<NewGuest>, FieldErrors> {
        let mut errors = FieldErrors::new();
        if raw.is_empty() || raw.len() > GUESTS_MAX {
            errors.add(
                "guests",
                format!(
                    "must hold between 1 and {GUESTS_MAX} guests (got {})",
                    raw.len()
                ),
            );
            return Err(errors);
        }
        let mut guests: Vec<NewGuest> = Vec::with_capacity(raw.len());
        let mut seen = std::collections::HashSet::new();
        for (i, guest) in raw.into_iter().enumerate() {
            let name = guest.name.trim().to_owned();
            if name.is_empty() || name.chars().count() > GUEST_NAME_MAX_CHARS {
                errors.add(
                    format!("guests[{i}].name"),
                    format!("must be 1 to {GUEST_NAME_MAX_CHARS} characters"),
                );
            }
            let email = match guest.email.as_deref().map(Email::parse) {
                None => None,
                Some(Ok(email)) => Some(email.to_string()),
                Some(Err(message)) => {
                    errors.add(format!("guests[{i}].email"), message);
                    None
                }
            };
            let reference = guest.reference.map(|r| r.trim().to_owned());
            if let Some(r) = &reference
                && (r.is_empty() || r.chars().count() > GUEST_REF_MAX_CHARS)
            {
                errors.add(
                    format!("guests[{i}].ref"),
                    format!("must be 1 to {GUEST_REF_MAX_CHARS} characters"),
                );
            }
            let identity = match &reference {
                Some(r) => format!("ref\n{r}"),
                None => format!(
                    "person\n{}\n{}",
                    normalise(&name),
                    email.as_deref().unwrap_or_default()
                ),
            };
            let id = GuestId::derive(poll, &identity);
            if seen.insert(id.clone()) {
                guests.push(NewGuest {
                    id,
                    name,
                    email,
                    reference,
                });
            }
        }
        errors.into_result().map(|()| guests)
    }
}

/// A name as two spellings of one person compare: case folded and runs of white space made one
/// space, so "Ann  Lee" and "ann lee" are one guest.
fn normalise(name: &str) -> String {
    name.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A guest as stored: their identity, their invite's generation, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub id: GuestId,
    pub poll_id: PollId,
    pub name: String,
    pub email: Option<String>,
    pub reference: Option<String>,
    /// Which token is the guest's live one: 0 at first, one more on each reissue.
    pub generation: u32,
    /// The live token is revoked and no other was issued.
    pub revoked: bool,
    /// When the guest first read their invite (the page or the API), with any card.
    pub opened_at: Option<OffsetDateTime>,
    pub added_at: OffsetDateTime,
}

/// One card of a job: the guest, which of their tokens it carries, and the name printed on it.
/// The token is derived by the render worker from the invite key, never carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub guest: GuestId,
    pub generation: u32,
    pub name: String,
    /// For the ZIP's manifest, beside the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Guest {
    /// The card of the guest's live token.
    pub fn card(&self) -> Card {
        Card {
            guest: self.id.clone(),
            generation: self.generation,
            name: self.name.clone(),
            email: self.email.clone(),
        }
    }
}

/// Where a guest stands, as the organiser's list shows it. Never what they voted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuestStatus {
    Invited,
    Opened,
    Voted,
    Revoked,
}

impl Guest {
    /// The guest's status, given whether a ballot of theirs exists. A ballot cast stays theirs
    /// and counted whatever happens to their card afterwards, so `voted` wins over `revoked`.
    pub fn status(&self, voted: bool) -> GuestStatus {
        if voted {
            GuestStatus::Voted
        } else if self.revoked {
            GuestStatus::Revoked
        } else if self.opened_at.is_some() {
            GuestStatus::Opened
        } else {
            GuestStatus::Invited
        }
    }
}

/// A poll's guest list in numbers, kept on one item so that a list's header is one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestCounts {
    /// Guests on the list (revoked ones included: they stay on it).
    pub guests: u64,
    /// Guests who read their invite at least once.
    pub opened: u64,
    /// When the last card job for "all guests" or "new guests" was started: guests added after
    /// it are the "new" ones.
    pub last_cards_at: Option<OffsetDateTime>,
}

/// The key invite tokens are derived from: 256 bits that never enter the table. On AWS it is
/// read once at cold start from Secrets Manager (`TALLY_INVITE_KEY_SECRET`); locally it is
/// generated into the data folder on first use. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteKey(SecretKey);

const INVITE_KEY_FILE: &str = "invite-hmac.key";
const WHAT: &str = "invite key";

impl InviteKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, String> {
        SecretKey::generate().map(Self)
    }

    /// A key from its text form (base64url, as the secret holds it): at least 256 bits.
    pub fn from_text(text: &str) -> Result<Self, String> {
        SecretKey::from_text(text, WHAT).map(Self)
    }

    /// The key's text form, for the file or the secret.
    pub fn to_text(&self) -> String {
        self.0.to_text()
    }

    /// Loads the key from `dir`, generating and saving it there on first use.
    pub fn load_or_generate(dir: &Path) -> Result<Self, String> {
        SecretKey::load_or_generate(dir, INVITE_KEY_FILE, WHAT).map(Self)
    }

    /// The token of `guest`'s card of `generation` in `poll`. The parts are joined with a
    /// separator none of them contains, so no two triples share a message.
    pub fn token(&self, poll: PollId, guest: &GuestId, generation: u32) -> InviteToken {
        let message = format!("invite\n{poll}\n{guest}\n{generation}");
        InviteToken::new(base64_url(&self.0.mac(message.as_bytes())))
    }
}

impl fmt::Debug for InviteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, email: Option<&str>, reference: Option<&str>) -> GuestInput {
        GuestInput {
            name: name.into(),
            email: email.map(Into::into),
            reference: reference.map(Into::into),
        }
    }

    #[test]
    fn one_person_is_one_guest_however_spelled() {
        let poll = PollId::new();
        let guests = NewGuest::parse_all(
            poll,
            vec![
                input("Ann  Lee", Some("Ann@Example.com"), None),
                input("ann lee", Some("ann@example.com"), None),
                input("Ann Lee", None, None),
                input("Someone else", None, Some("row-7")),
                input("Renamed", None, Some("row-7")),
            ],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<_> = guests.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["Ann  Lee", "Ann Lee", "Someone else"]);
        let again = NewGuest::parse_all(poll, vec![input("ANN LEE", None, None)])
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            again[0].id, guests[1].id,
            "the same guest in a later request"
        );
        let elsewhere = NewGuest::parse_all(PollId::new(), vec![input("Ann Lee", None, None)])
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(elsewhere[0].id, guests[1].id, "ids are per poll");
        assert!(GuestId::parse(guests[0].id.as_str()).is_some());
        assert!(GuestId::parse("../etc").is_none());
    }

    #[test]
    fn bad_guests_are_named_by_position() {
        let errors = NewGuest::parse_all(
            PollId::new(),
            vec![input("Ann", None, None), input(" ", Some("nope"), Some(""))],
        )
        .err()
        .unwrap_or_default();
        let fields: Vec<_> = errors.fields().collect();
        assert_eq!(
            fields,
            ["guests[1].email", "guests[1].name", "guests[1].ref"]
        );
        assert!(NewGuest::parse_all(PollId::new(), vec![]).is_err());
    }

    #[test]
    fn tokens_follow_poll_guest_and_generation_under_the_key() {
        let key = InviteKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let other = InviteKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let poll = PollId::new();
        let ann = GuestId::derive(poll, "ann");
        let bob = GuestId::derive(poll, "bob");
        assert_eq!(key.token(poll, &ann, 0), key.token(poll, &ann, 0));
        let distinct = [
            key.token(poll, &ann, 0),
            key.token(poll, &ann, 1),
            key.token(poll, &bob, 0),
            key.token(PollId::new(), &ann, 0),
            other.token(poll, &ann, 0),
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(key.token(poll, &ann, 0).as_str().len(), 43);
        assert!(!format!("{key:?}").contains(&key.to_text()));
        let back = InviteKey::from_text(&key.to_text()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, key);
        assert!(InviteKey::from_text("c2hvcnQ").is_err(), "too short");
    }

    #[test]
    fn a_key_is_generated_once_into_the_data_folder() {
        let dir = std::env::temp_dir().join(format!("tally-invite-key-{}", uuid::Uuid::new_v4()));
        let first = InviteKey::load_or_generate(&dir).unwrap_or_else(|e| panic!("{e}"));
        let again = InviteKey::load_or_generate(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_ballot_outranks_every_other_status() {
        let mut guest = Guest {
            id: GuestId::derive(PollId::new(), "x"),
            poll_id: PollId::new(),
            name: "X".into(),
            email: None,
            reference: None,
            generation: 0,
            revoked: false,
            opened_at: None,
            added_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(guest.status(false), GuestStatus::Invited);
        guest.opened_at = Some(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(guest.status(false), GuestStatus::Opened);
        guest.revoked = true;
        assert_eq!(guest.status(false), GuestStatus::Revoked);
        assert_eq!(guest.status(true), GuestStatus::Voted);
    }
}
