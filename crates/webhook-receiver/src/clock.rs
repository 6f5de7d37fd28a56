//! Wall-clock time for the engine's decisions (restart windows, uptimes, recurrence windows).
//!
//! Production uses the system clock, which is what Docker's timestamps are in. Tests run the
//! engine under `tokio::time::pause()`, where sleeps advance virtual time instantly; their clock
//! follows that virtual time, so a ten-minute window passes in a test as it would for real.

use std::sync::Arc;

use chrono::{DateTime, Utc};

#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(Utc::now))
    }

    /// Wall time that advances with tokio's clock (virtual when tokio's time is paused).
    pub fn tokio() -> Self {
        let base = Utc::now();
        let start = tokio::time::Instant::now();
        Clock(Arc::new(move || {
            base + chrono::Duration::from_std(start.elapsed()).unwrap_or_default()
        }))
    }

    /// Time from `f` (tests: a clock that jumps, or that fails on demand).
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}
