//! Agent identities for the HTTP decision API: each agent holds a bearer
//! token; the server keeps only its SHA-256, in an agents file
//! (`treasury-agent: sha256:<hex>` per line, `#` comments), which it refuses
//! to read when others may (as it does key files). A request's token is
//! hashed and compared with every listed hash in constant time.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// The prefix of every agent token (`cfa_` and 43 characters).
pub const TOKEN_PREFIX: &str = "cfa_";

/// One agent: its name (the actor of its calls) and its token's SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct Agent {
    /// The actor its calls are decided as.
    pub name: String,
    hash: [u8; 32],
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An agents file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// Unreadable.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Readable by others than its owner.
    #[error(
        "{file}: readable by others (mode {mode:o}): agent token hashes let anyone who reads them \
         try tokens offline; chmod 600 it"
    )]
    Exposed {
        /// The file.
        file: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A line that is not `name: sha256:<64 hex>`.
    #[error("{file}:{line}: {message}")]
    Line {
        /// The file.
        file: String,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No randomness for a new token.
    #[error("no randomness for a token: {0}")]
    Random(String),
}

/// The agents a server knows.
#[derive(Debug, Clone, Default)]
pub struct Agents {
    agents: Vec<Agent>,
}

impl Agents {
    /// Reads an agents file.
    pub fn load(path: &Path) -> Result<Agents, AgentsError> {
        let file = path.display().to_string();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(path).map_err(|source| AgentsError::Io {
                file: file.clone(),
                source,
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(AgentsError::Exposed { file, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(|source| AgentsError::Io {
            file: file.clone(),
            source,
        })?;
        Agents::parse(&text, &file)
    }

    /// Reads the text of an agents file named `file` (for messages).
    pub fn parse(text: &str, file: &str) -> Result<Agents, AgentsError> {
        let mut agents: Vec<Agent> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let fault = |message: String| AgentsError::Line {
                file: file.to_owned(),
                line: i + 1,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| fault("expected `name: sha256:<hex>`".to_owned()))?;
            let name = name.trim();
            if !capfence_compiler::token::is_token(name) {
                return Err(fault(format!(
                    "`{name}` is not a plain token to name an agent"
                )));
            }
            let hex_text = hash
                .trim()
                .strip_prefix("sha256:")
                .ok_or_else(|| fault("the hash must be `sha256:<64 hex digits>`".to_owned()))?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(hex_text, &mut hash)
                .map_err(|_| fault("the hash must be `sha256:<64 hex digits>`".to_owned()))?;
            if agents.iter().any(|a| a.name == name) {
                return Err(fault(format!("agent `{name}` is listed twice")));
            }
            if agents.iter().any(|a| a.hash == hash) {
                return Err(fault(format!(
                    "agent `{name}` has another agent's token: each agent needs its own"
                )));
            }
            agents.push(Agent {
                name: name.to_owned(),
                hash,
            });
        }
        Ok(Agents { agents })
    }

    /// Whether no agent is listed.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The agent whose token this is: hashed, then compared with every
    /// listed hash in constant time (no early exit).
    pub fn authenticate(&self, token: &str) -> Option<&Agent> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for agent in &self.agents {
            if bool::from(agent.hash.ct_eq(&hash)) {
                found = Some(agent);
            }
        }
        found
    }
}

/// A fresh token for agent `name`, and its line for the agents file.
pub fn new_agent(name: &str) -> Result<(String, String), AgentsError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AgentsError::Random(e.to_string()))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let line = format!(
        "{name}: sha256:{}",
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    Ok((token, line))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_agent_authenticates_and_nothing_else_does() {
        let (token, line) = new_agent("treasury-agent").unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 4 + 43);
        let agents = Agents::parse(&format!("# agents\n\n{line}\n"), "agents").unwrap();
        assert_eq!(agents.authenticate(&token).unwrap().name, "treasury-agent");
        assert!(agents.authenticate("cfa_wrong").is_none());
        assert!(agents.authenticate(&token[..token.len() - 1]).is_none());
        for (bad, message) in [
            ("a b: sha256:00", "not a plain token"),
            ("agent", "expected `name: sha256:<hex>`"),
            ("agent: md5:00", "sha256:<64 hex"),
            ("agent: sha256:zz", "sha256:<64 hex"),
        ] {
            let e = Agents::parse(bad, "agents").unwrap_err().to_string();
            assert!(e.starts_with("agents:1: ") && e.contains(message), "{e}");
        }
        let twice = format!("{line}\n{line}\n");
        assert!(
            Agents::parse(&twice, "f")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
