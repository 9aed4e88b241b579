//! A 256-bit HMAC key that lives outside the table: on AWS in Secrets Manager, read once at
//! cold start; locally generated into the data folder on first use. The invite key and the
//! live-results key are two of them, each with its own file and its own purpose, so that
//! neither can stand in for the other.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The key's bytes; its `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, String> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| e.to_string())?;
        Ok(Self(key))
    }

    /// A key from its text form (base64url, as the secret holds it): at least 256 bits.
    /// `what` names the key in the error.
    pub fn from_text(text: &str, what: &str) -> Result<Self, String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .map_err(|e| format!("the {what} is not base64url: {e}"))?;
        if bytes.len() < 32 {
            return Err(format!(
                "the {what} has {} bytes; it needs at least 32",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The key's text form, for the file or the secret.
    pub fn to_text(&self) -> String {
        base64_url(&self.0)
    }

    /// Loads the key from `dir/file`, generating and saving it there (readable by its owner
    /// only) on first use, as the dev server does with its signing key.
    pub fn load_or_generate(dir: &Path, file: &str, what: &str) -> Result<Self, String> {
        let path = dir.join(file);
        if path.exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Self::from_text(&text, what);
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let key = Self::generate()?;
        write_private(&path, &key.to_text())?;
        Ok(key)
    }

    /// HMAC-SHA-256 of `message` under the key.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(message);
                mac.finalize().into_bytes().into()
            }
            // HMAC takes keys of any length, so this arm never runs; a keyed hash stands in.
            Err(_) => Sha256::digest([&self.0, message].concat()).into(),
        }
    }

    /// Whether `tag` is the MAC of `message`, compared in constant time.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(message);
                mac.verify_slice(tag).is_ok()
            }
            Err(_) => false,
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Creates `path` readable by its owner only (on Unix) and writes `text` into it.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
