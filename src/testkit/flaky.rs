//! Outages and crashes on demand, for tests: `set_down(true)` makes every call fail as an
//! unreachable database would; `fail_after(n)` lets `n` more calls through, then fails every call
//! (a syncer dying between any two steps). Data is never touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::domain::RegionName;
use crate::store::guard::{Guard, Guarded};
use crate::store::{Store, StoreError};

#[derive(Default)]
pub struct Flaky {
    down: AtomicBool,
    /// Calls still allowed; negative: unlimited.
    budget: AtomicI64,
}

/// A store that fails on demand.
pub type FlakyStore = Guarded<Flaky>;

impl Flaky {
    /// Wraps `inner`, healthy.
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<FlakyStore> {
        Arc::new(Guarded::new(inner, Self { down: AtomicBool::new(false), budget: AtomicI64::new(-1) }))
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Lets `calls` more calls through, then fails all until `heal`.
    pub fn fail_after(&self, calls: i64) {
        self.budget.store(calls, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.budget.store(-1, Ordering::SeqCst);
        self.set_down(false);
    }
}

impl Guard for Flaky {
    fn admit(&self, region: &RegionName) -> Result<(), StoreError> {
        let within_budget = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| if b > 0 { Some(b - 1) } else { None })
            .map_or_else(|b| b < 0, |_| true);
        if !self.down.load(Ordering::SeqCst) && within_budget {
            Ok(())
        } else {
            Err(StoreError::Unavailable { region: region.clone(), message: "panne simulée".into() })
        }
    }
}
