//! Third-party secrets at rest (bot tokens, SIP passwords, speech-provider keys): sealed with
//! ChaCha20-Poly1305 under the server's key, a random nonce per value, and the owner's user
//! id as associated data, so that a sealed value copied into another user's row no longer
//! opens. The key comes from `secret_key` in the configuration or, when unset, from
//! `<data_dir>/secret.key`, made on first start.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::Rng;

/// Bytes of a ChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 12;
/// Bytes of the key.
const KEY_LEN: usize = 32;
/// Name of the generated key file inside the data folder.
pub const KEY_FILE: &str = "secret.key";

/// Why a key could not be loaded or a value could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The configured or stored key is not base64 of 32 bytes.
    #[error("secret_key must be base64 of 32 bytes ({0})")]
    BadKey(String),
    /// The key file could not be read or written.
    #[error("cannot use the key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The value could not be sealed (longer than the cipher allows).
    #[error("value cannot be sealed")]
    Seal,
    /// The value is malformed, was sealed with another key, or belongs to another user.
    #[error("sealed value does not open")]
    Open,
}

/// The server's sealing key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box over raw key bytes.
    pub fn from_key(key: &[u8; KEY_LEN]) -> SecretBox {
        SecretBox {
            cipher: ChaCha20Poly1305::new(&(*key).into()),
        }
    }

    /// A box over a base64 key, as written in the configuration and the key file.
    pub fn from_base64(text: &str) -> Result<SecretBox, CryptoError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| CryptoError::BadKey(e.to_string()))?;
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| CryptoError::BadKey(format!("{} bytes", b.len())))?;
        Ok(SecretBox::from_key(&key))
    }

    /// A box over a fresh random key (tests, and the first start).
    pub fn generate() -> SecretBox {
        SecretBox::from_key(&random_key())
    }

    /// The configured key, else the one in `<data_dir>/secret.key`, made (mode 0600) when
    /// missing so that a restart keeps opening what the last run sealed.
    pub fn load_or_create(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<SecretBox, CryptoError> {
        if let Some(text) = configured {
            return SecretBox::from_base64(text);
        }
        let path = data_dir.join(KEY_FILE);
        let io = |source| CryptoError::KeyFile {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        match create_private(&path) {
            Ok(mut file) => {
                let text = STANDARD.encode(random_key());
                file.write_all(text.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                SecretBox::from_base64(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                SecretBox::from_base64(&std::fs::read_to_string(&path).map_err(io)?)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plaintext` for `user_id`: base64 of nonce || ciphertext.
    pub fn seal(&self, user_id: &str, plaintext: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: user_id.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Opens a value sealed for `user_id`.
    pub fn open(&self, user_id: &str, sealed: &str) -> Result<String, CryptoError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| CryptoError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Open)?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Open)
    }
}

/// What a list shows of a secret: its last four characters, or nothing of a short one.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…".to_string();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    key
}

/// Creates a file only the owner can read; fails when it exists.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_user_and_key() {
        let sb = SecretBox::generate();
        let sealed = sb.seal("user-a", "xoxb-secret-token").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(sb.open("user-a", &sealed).unwrap(), "xoxb-secret-token");
        assert!(sb.open("user-b", &sealed).is_err());
        assert!(SecretBox::generate().open("user-a", &sealed).is_err());
        assert!(sb.open("user-a", "not base64!").is_err());
        assert!(sb.open("user-a", "AAAA").is_err());
    }

    #[test]
    fn each_seal_uses_a_new_nonce() {
        let sb = SecretBox::generate();
        assert_ne!(sb.seal("u", "same").unwrap(), sb.seal("u", "same").unwrap());
    }

    #[test]
    fn configured_keys_must_be_32_bytes_of_base64() {
        assert!(SecretBox::from_base64("short").is_err());
        assert!(SecretBox::from_base64(&STANDARD.encode([7u8; 16])).is_err());
        let a = SecretBox::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let b = SecretBox::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(b.open("u", &a.seal("u", "v").unwrap()).unwrap(), "v");
    }

    #[test]
    fn the_key_file_is_made_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("chamade-key-{}", uuid::Uuid::new_v4()));
        let first = SecretBox::load_or_create(None, &dir).unwrap();
        let sealed = first.seal("u", "kept").unwrap();
        let again = SecretBox::load_or_create(None, &dir).unwrap();
        assert_eq!(again.open("u", &sealed).unwrap(), "kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hints_show_only_the_tail_of_long_secrets() {
        assert_eq!(hint("MTIzNDU2Nzg5.abcd"), "…abcd");
        assert_eq!(hint("short"), "…");
    }
}
