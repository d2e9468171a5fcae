//! Operator keys and signatures: who approved, provably.
//!
//! An operator key is an Ed25519 key pair (RFC 8032, by `ed25519-dalek`)
//! kept in a file only its owner can read. A policy lists the public halves
//! under `approvers:`; an operator action signs a *statement* (what it
//! decides, on which ticket or grant, under which policy) and the signature
//! goes into the action's chain record. Verification uses
//! `verify_strict`, which refuses weak keys and malleable signatures.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use capfence_compiler::keys::{ED25519_PREFIX, public_key_bytes};
use capfence_compiler::token;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// The first line of an operator key file.
const KEY_FILE_HEADER: &str = "capfence-operator-key-v1";

/// An operator key file that could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The file exists; keys are never overwritten.
    #[error("{0} already exists; CapFence never overwrites a key (choose another --out)")]
    Exists(PathBuf),
    /// The file could not be read or written.
    #[error("{file}: {message}")]
    Io {
        /// The key file.
        file: PathBuf,
        /// What failed.
        message: String,
    },
    /// Others may read the file.
    #[error("{file}: the key file can be read by others (mode {mode:o}); run `chmod 600 {file}`")]
    Exposed {
        /// The key file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not an operator key.
    #[error("{file}:{line}: {message}")]
    Format {
        /// The key file.
        file: PathBuf,
        /// The line at fault.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The operator name is not a plain token.
    #[error("operator name {0:?} is not a plain token (letters, digits, `_-.@:+`)")]
    BadName(String),
    /// No randomness could be had from the operating system.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// An operator's signing key and name. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct OperatorKey {
    name: String,
    secret: SigningKey,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKey")
            .field("name", &self.name)
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl OperatorKey {
    /// A new key for `name`, from the operating system's random source.
    pub fn generate(name: &str) -> Result<OperatorKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        OperatorKey::from_seed(name, seed)
    }

    /// The key with this 32-byte secret seed (tests and key escrow; a seed
    /// must come from a secure random source).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<OperatorKey, KeyError> {
        if !token::is_token(name) {
            return Err(KeyError::BadName(name.to_owned()));
        }
        Ok(OperatorKey {
            name: name.to_owned(),
            secret: SigningKey::from_bytes(&seed),
        })
    }

    /// The operator's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key as a policy lists it: `ed25519:<base64>`.
    pub fn public_key(&self) -> String {
        format!(
            "{ED25519_PREFIX}{}",
            BASE64.encode(self.secret.verifying_key().as_bytes())
        )
    }

    /// Signs `message`; the signature in base64.
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(self.secret.sign(message).to_bytes())
    }

    /// Writes the key to a new file readable by its owner only (mode 0600);
    /// refuses to overwrite anything.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        let io = |e: std::io::Error| KeyError::Io {
            file: path.to_owned(),
            message: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        let text = format!(
            "{KEY_FILE_HEADER}\nname: {}\npublic: {}\nsecret: {}\n",
            self.name,
            self.public_key(),
            BASE64.encode(self.secret.to_bytes())
        );
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file written by [`write_new`](Self::write_new). Refuses a
    /// file others can read, and one whose public line does not match its
    /// secret.
    pub fn load(path: &Path) -> Result<OperatorKey, KeyError> {
        let io = |e: std::io::Error| KeyError::Io {
            file: path.to_owned(),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed {
                    file: path.to_owned(),
                    mode,
                });
            }
        }
        if meta.len() > 4096 {
            return Err(KeyError::Format {
                file: path.to_owned(),
                line: 1,
                message: "too large for an operator key file".to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let bad = |line: usize, message: &str| KeyError::Format {
            file: path.to_owned(),
            line,
            message: message.to_owned(),
        };
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(bad(
                1,
                "not a CapFence operator key (`capfence keys new` makes one)",
            ));
        }
        let mut field = |n: usize, name: &str| -> Result<String, KeyError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(": "))
                .map(str::to_owned)
                .ok_or_else(|| bad(n, &format!("expected `{name}: …`")))
        };
        let name = field(2, "name")?;
        let public = field(3, "public")?;
        let secret = field(4, "secret")?;
        let seed: [u8; 32] = BASE64
            .decode(secret.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad(4, "the secret is not 32 bytes of base64"))?;
        let key = OperatorKey::from_seed(&name, seed).map_err(|_| bad(2, "bad operator name"))?;
        if key.public_key() != public.trim() {
            return Err(bad(3, "the public key does not belong to the secret"));
        }
        Ok(key)
    }
}

/// Whether `signature` (base64) is `public`'s (`ed25519:<base64>`) signature
/// of `message`. Weak keys and non-canonical signatures never verify.
pub fn verify(public: &str, message: &[u8], signature: &str) -> bool {
    let Some(bytes) = public_key_bytes(public) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&bytes) else {
        return false;
    };
    if key.is_weak() {
        return false;
    }
    let Some(signature) = BASE64
        .decode(signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
    else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

/// Whether `public` is a usable Ed25519 public key (a valid, non-weak point).
pub fn usable_public_key(public: &str) -> bool {
    public_key_bytes(public)
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .is_some_and(|k| !k.is_weak())
}

/// The bytes an operator signs: a domain line naming `kind`, then each part
/// as `name:length:value`, so no two different statements share bytes.
pub fn statement(kind: &str, parts: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("capfence-{kind}-v1\n");
    for (name, value) in parts {
        out.push_str(&format!("{name}:{}:{value}\n", value.len()));
    }
    out.into_bytes()
}
