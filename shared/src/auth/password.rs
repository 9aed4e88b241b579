//! Argon2id password hashing with OWASP's parameters (19 MiB, two passes, one lane).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;

fn hasher() -> Argon2<'static> {
    // The parameters are constants that `Params::new` accepts; a failure would be a bug that
    // every test of registration catches at once.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (algorithm, parameters, salt and hash together).
/// CPU-heavy (tens of milliseconds): call it from a blocking task.
pub fn hash(password: &Password) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC string. Parameters are read from the string, so
/// hashes made with older parameters still verify.
pub fn verify(password: &Password, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        hasher()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of a random password, verified against when the email is unknown so that login
/// takes about as long for an unknown email as for a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut secret = [0u8; 24];
        let _ = getrandom::fill(&mut secret);
        hash(&Password::generated(base64_url(&secret))).unwrap_or_default()
    })
}

pub(crate) fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let password = Password::new_for_signup("correct horse battery".into())
            .unwrap_or_else(|e| panic!("{e}"));
        let phc = hash(&password).unwrap_or_default();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&password, &phc));
        let wrong = Password::for_login("correct horse battery!".into());
        assert!(wrong.is_some_and(|w| !verify(&w, &phc)));
    }

    #[test]
    fn the_last_character_of_a_long_password_matters() {
        let a = "a".repeat(127);
        let p = Password::new_for_signup(format!("{a}x")).unwrap_or_else(|e| panic!("{e}"));
        let phc = hash(&p).unwrap_or_default();
        let q = Password::for_login(format!("{a}y"));
        assert!(q.is_some_and(|q| !verify(&q, &phc)));
    }
}
