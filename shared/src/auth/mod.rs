//! Authentication: password hashing, access tokens (EdDSA JWTs), refresh tokens, and the key
//! material behind them. Only the auth function holds a [`TokenIssuer`]; every function holds
//! a [`TokenVerifier`] with the public key alone.

pub mod keys;
pub mod password;
pub mod refresh;
pub mod tokens;

pub use keys::KeyMaterial;
pub use tokens::{Claims, TokenIssuer, TokenVerifier};
