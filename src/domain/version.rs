//! Versions and the hybrid logical clock. Owns: the version order. Leaves: persistence of each
//! region's clock (the store advances it inside write transactions), wall time (injected).

use std::fmt;

use crate::domain::RegionName;

/// A hybrid logical clock value: wall-clock milliseconds in the high bits, a logical counter in
/// the low 16 bits. A region's next value is `max(last + 1, wall_ms << 16)`, so it never goes
/// backwards and always passes every value the region has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc(pub i64);

impl Hlc {
    pub const LOGICAL_BITS: u32 = 16;

    /// The smallest clock value at a wall time in milliseconds since the Unix epoch.
    pub fn from_wall_ms(ms: i64) -> Self {
        Self(ms.max(0) << Self::LOGICAL_BITS)
    }

    /// Milliseconds since the epoch of the physical part.
    pub fn wall_ms(self) -> i64 {
        self.0 >> Self::LOGICAL_BITS
    }
}

/// Field order *is* the LWW order: greater clock wins, then greater origin. `derive(Ord)` says so.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub hlc: Hlc,
    /// The region whose database stamped this write (not necessarily the sale's region).
    pub origin: RegionName,
}

impl fmt::Display for Version {
    /// `hlc.origin-slug`, the form used in ETags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.hlc.0, self.origin.slug())
    }
}

/// Wall time, injected so tests can skew a region's clock.
pub type WallClock = std::sync::Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> WallClock {
    std::sync::Arc::new(chrono::Utc::now)
}
