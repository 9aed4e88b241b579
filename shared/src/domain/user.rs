//! Accounts: the normalised email and the password rules.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::UserId;

/// An email address, trimmed and lower-cased, so that `Ann@Example.com ` and `ann@example.com`
/// are one account. (Local parts are case-sensitive in theory; no mail provider in use treats
/// them so, and two accounts differing only in case would be a support problem.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

/// The longest address SMTP can carry (RFC 5321 path limit less the brackets).
pub const EMAIL_MAX_LEN: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("is required");
        }
        if email.len() > EMAIL_MAX_LEN {
            return Err("must be at most 254 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("must be an email address such as ann@example.com");
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.contains('@') || !domain_ok {
            return Err("must be an email address such as ann@example.com");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as typed. It is never truncated and never printed.
pub struct Password(String);

pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;

impl Password {
    /// Checks the length rule for a new password (8 to 128 characters, counted as Unicode
    /// scalar values so that a passphrase in any script gets the same allowance).
    pub fn new_for_signup(raw: String) -> Result<Self, &'static str> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err("must be at least 8 characters");
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err("must be at most 128 characters");
        }
        Ok(Self(raw))
    }

    /// A password offered at login. Only the upper bound is kept, so that a huge body cannot
    /// make the server hash megabytes; a too-long password can never match anyway.
    pub fn for_login(raw: String) -> Option<Self> {
        (raw.chars().count() <= PASSWORD_MAX_CHARS).then_some(Self(raw))
    }

    /// A password the server made itself (the login decoy), exempt from the length rules.
    pub(crate) fn generated(raw: String) -> Self {
        Self(raw)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A registered user, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").map(|e| e.0),
            Ok("ann@example.com".to_owned())
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@.com",
            "ann@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn password_length_is_counted_in_characters_and_never_truncated() {
        assert!(Password::new_for_signup("1234567".into()).is_err());
        assert!(Password::new_for_signup("é".repeat(8)).is_ok());
        assert!(Password::new_for_signup("x".repeat(129)).is_err());
        let long = "y".repeat(128);
        assert_eq!(
            Password::new_for_signup(long.clone()).map(|p| p.expose().len()),
            Ok(128)
        );
        assert!(Password::for_login("z".repeat(129)).is_none());
    }
}
