//! Ed25519 key material for access tokens. In production the PEMs come from configuration
//! (filled from Secrets Manager or SSM); locally a pair is generated on first run into the
//! data folder. No key ever lives in the repository.

use std::fmt;
use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};

/// The private key (only for the function that mints tokens) and the public key.
#[derive(Clone)]
pub struct KeyMaterial {
    pub private_pem: Option<String>,
    pub public_pem: String,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("private_pem", &self.private_pem.as_ref().map(|_| "***"))
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

const PRIVATE_FILE: &str = "jwt-ed25519-private.pem";
const PUBLIC_FILE: &str = "jwt-ed25519-public.pem";

impl KeyMaterial {
    /// A new random key pair.
    pub fn generate() -> Result<Self, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
        let key = SigningKey::from_bytes(&seed);
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            private_pem: Some(private_pem.to_string()),
            public_pem,
        })
    }

    /// Loads the pair from `dir`, generating and saving it there on first use. The private
    /// key file is readable by its owner only.
    pub fn load_or_generate(dir: &Path) -> Result<Self, String> {
        let private = dir.join(PRIVATE_FILE);
        let public = dir.join(PUBLIC_FILE);
        if private.exists() && public.exists() {
            let read =
                |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
            return Ok(Self {
                private_pem: Some(read(&private)?),
                public_pem: read(&public)?,
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let pair = Self::generate()?;
        write_private(&private, pair.private_pem.as_deref().unwrap_or_default())?;
        std::fs::write(&public, &pair.public_pem)
            .map_err(|e| format!("{}: {e}", public.display()))?;
        Ok(pair)
    }

    /// The same pair without the private key, for functions that only verify.
    pub fn public_only(&self) -> Self {
        Self {
            private_pem: None,
            public_pem: self.public_pem.clone(),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, pem: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(pem.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, pem: &str) -> Result<(), String> {
    std::fs::write(path, pem).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_is_saved_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("tally-keys-{}", uuid::Uuid::new_v4()));
        let first = KeyMaterial::load_or_generate(&dir).unwrap_or_else(|e| panic!("{e}"));
        let again = KeyMaterial::load_or_generate(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.public_pem, again.public_pem);
        assert!(
            first
                .private_pem
                .as_deref()
                .is_some_and(|p| p.contains("PRIVATE KEY"))
        );
        assert!(!format!("{first:?}").contains("PRIVATE KEY"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
