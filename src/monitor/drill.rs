//! The outage drill: the guide's "stop a database" demo on any install. Owns: the `Drill` guard,
//! put on every region's store through the one guarded-store seam (`store::guard`): while down,
//! every call fails with `StoreError::Unavailable` exactly as a dead database would, touching no
//! data. `App::build` gates every store, so probes, reads, writes (fail-over) and sync rounds all
//! see the outage with no `if drill` anywhere else. Leaves: the HTTP toggle (web/monitor_api.rs),
//! what an outage means to each caller.
//!
//! A drill lives in memory: a restart lifts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::RegionName;
use crate::store::guard::{Guard, Guarded};
use crate::store::{Store, StoreError};

/// Whether a region is in an outage drill.
#[derive(Default)]
pub struct Drill {
    down: AtomicBool,
}

impl Guard for Drill {
    fn admit(&self, region: &RegionName) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable { region: region.clone(), message: "panne simulée (exercice de panne en cours)".into() })
        } else {
            Ok(())
        }
    }
}

/// A region's store that can be switched off.
pub type GatedStore = Guarded<Drill>;

impl Guarded<Drill> {
    /// Starts (`true`) or lifts (`false`) the drill; returns the previous state.
    pub fn set_down(&self, down: bool) -> bool {
        self.guard().down.swap(down, Ordering::SeqCst)
    }

    pub fn is_down(&self) -> bool {
        self.guard().down.load(Ordering::SeqCst)
    }
}

/// Wraps every store in a gate, keeping the order.
pub fn gate_all(stores: Vec<Arc<dyn Store>>) -> Vec<Arc<GatedStore>> {
    stores.into_iter().map(|store| Arc::new(Guarded::new(store, Drill::default()))).collect()
}

/// The gated stores as plain stores, for `Ventes` and the sync engine.
pub fn as_stores(gates: &[Arc<GatedStore>]) -> Vec<Arc<dyn Store>> {
    gates.iter().map(|g| Arc::clone(g) as Arc<dyn Store>).collect()
}
