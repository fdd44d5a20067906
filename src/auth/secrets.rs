//! Credentials and secrets at rest: API keys and session cookies are random and stored only
//! as SHA-256 hashes; passwords as argon2id; third-party tokens encrypted with a key from the
//! configuration.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Every API key starts with this, so leaked keys are recognisable (secret scanners).
pub const KEY_PREFIX: &str = "chmd_";

/// Characters of a key kept in clear to tell keys apart in a list (`chmd_` + 8).
const SHOWN_PREFIX_LEN: usize = 13;

/// `n` bytes from the operating system's CSPRNG, URL-safe base64.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new API key: the full key (shown once), its displayable prefix and its hash.
pub struct NewKey {
    /// `chmd_` + 43 characters (32 random bytes).
    pub key: String,
    /// The first characters, kept in clear.
    pub prefix: String,
    /// What is stored and looked up.
    pub hash: String,
}

/// Makes a key with 256 bits of entropy.
pub fn new_api_key() -> NewKey {
    let key = format!("{KEY_PREFIX}{}", random_token(32));
    NewKey {
        prefix: key[..SHOWN_PREFIX_LEN].to_string(),
        hash: hash_token(&key),
        key,
    }
}

/// SHA-256 of a high-entropy token. A fast hash is enough here: keys and cookies carry 256
/// random bits, so there is nothing to brute-force, and lookups stay one indexed query.
pub fn hash_token(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against its stored PHC string, in constant time.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_prefixed_and_hashed() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(a.key.starts_with("chmd_"));
        assert_eq!(a.key.len(), 5 + 43);
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(&a.prefix));
        assert_eq!(a.hash, hash_token(&a.key));
        assert!(!a.hash.contains(&a.key[5..]));
    }

    #[test]
    fn passwords_verify_only_with_the_right_one() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
    }
}
