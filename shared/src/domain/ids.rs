//! Identifiers. Each is a distinct type so that a poll id can never be passed where a user id is
//! expected; all are parsed from text once, at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id: unguessable, so knowing one id reveals no other.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId)
            }
        }
    };
}

uuid_id!(
    /// A registered user.
    UserId
);
uuid_id!(
    /// A poll.
    PollId
);
uuid_id!(
    /// A render job.
    JobId
);
uuid_id!(
    /// A chain of refresh tokens issued from one login; reuse of any old link revokes it all.
    FamilyId
);

/// The text was not a well-formed id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

/// An option of a poll: `o1`..`o20`, stable for the life of the option list.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, example = "o1")]
pub struct OptionId(String);

impl OptionId {
    /// The id of the option at `index` (zero-based) in a freshly written option list.
    pub fn for_index(index: usize) -> Self {
        Self(format!("o{}", index + 1))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OptionId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Short and ASCII only: an option id is spelled inside a DynamoDB attribute name.
        let valid = s.len() >= 2
            && s.len() <= 4
            && s.starts_with('o')
            && s[1..].bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = PollId::new();
        assert_eq!(id.to_string().parse::<PollId>(), Ok(id));
        assert_eq!("nope".parse::<PollId>(), Err(InvalidId));
    }

    #[test]
    fn option_ids_are_short_and_safe() {
        assert_eq!(OptionId::for_index(0).as_str(), "o1");
        assert!("o20".parse::<OptionId>().is_ok());
        for bad in ["", "o", "x1", "o1a", "o#1", "o12345"] {
            assert!(bad.parse::<OptionId>().is_err(), "{bad}");
        }
    }
}
