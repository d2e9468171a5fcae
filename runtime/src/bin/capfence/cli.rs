//! The pieces of the `capfence` command line: its arguments, its commands
//! (each calls the library and renders what it returns) and its human
//! output.

pub mod args;
pub mod commands;
pub mod operate;
pub mod render;
pub mod tree;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use capfence::clock::SystemClock;
use capfence::{ActionRuntime, Ledger};

/// A command's outcome when it could not run: a message for stderr, exit 2.
pub type Failure = String;

/// Where the ledger is: a state directory or a store URL.
pub struct Place {
    /// The state directory.
    pub state: PathBuf,
    /// A store URL, which wins over the directory.
    pub store: Option<String>,
}

impl Place {
    /// A runtime builder for `policy` on this ledger.
    pub fn builder(&self, policy: &Path) -> capfence::RuntimeBuilder {
        let builder = ActionRuntime::builder(policy);
        match &self.store {
            Some(url) => builder.store_url(url),
            None => builder.state_dir(&self.state),
        }
    }

    /// The ledger; `must_exist`: a missing state directory is an error
    /// (reading commands), not a new empty ledger.
    pub fn ledger(&self, must_exist: bool) -> Result<Ledger, Failure> {
        let url = match &self.store {
            Some(url) => url.clone(),
            None => self.state.to_string_lossy().into_owned(),
        };
        let store =
            capfence::store::open_url_checked(&url, must_exist).map_err(|e| e.to_string())?;
        Ok(Ledger::new(
            store,
            Arc::new(SystemClock),
            Duration::from_secs(3600),
        ))
    }
}
