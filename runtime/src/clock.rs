//! Time: microseconds since the Unix epoch, and their RFC 3339 UTC form.

use std::sync::Arc;

/// A source of the current time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Now, in microseconds since 1970-01-01T00:00:00Z.
    fn now_micros(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        capfence_compiler::time::now_micros()
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

pub use capfence_compiler::time::{parse_rfc3339, rfc3339};
