//! Refresh tokens: 256 random bits shown to the client once; only their SHA-256 is stored, so
//! a leaked table does not leak usable tokens.

use sha2::{Digest, Sha256};

use super::password::base64_url;

/// A fresh refresh token and the hash under which it is stored.
pub fn generate() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    let token = base64_url(&bytes);
    let hash = hash(&token);
    Ok((token, hash))
}

/// The storage key of a presented token. Tokens of the wrong shape hash like any other and
/// simply find nothing.
pub fn hash(token: &str) -> String {
    base64_url(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_random_and_hashed_consistently() {
        let (a, ha) = super::generate().unwrap_or_default();
        let (b, _) = super::generate().unwrap_or_default();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(super::hash(&a), ha);
        assert_ne!(ha, a);
    }
}
