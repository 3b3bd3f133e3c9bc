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

    /// The smallest clock value at a wall time in milliseconds since the Unix epoch (times
    /// beyond what the clock can hold read as its last millisecond: never a wrap).
    pub fn from_wall_ms(ms: i64) -> Self {
        Self(ms.clamp(0, i64::MAX >> Self::LOGICAL_BITS) << Self::LOGICAL_BITS)
    }

    /// The greatest clock value within this value's millisecond.
    pub fn saturating_end_of_ms(self) -> Self {
        Self(self.0 | ((1 << Self::LOGICAL_BITS) - 1))
    }

    /// `self + n`, or an error once the clock would pass `i64::MAX` (it never wraps).
    pub fn checked_add(self, n: i64) -> Result<Self, ClockOverflow> {
        self.0.checked_add(n).map(Self).ok_or(ClockOverflow { hlc: self.0, n })
    }

    /// Milliseconds since the epoch of the physical part.
    pub fn wall_ms(self) -> i64 {
        self.0 >> Self::LOGICAL_BITS
    }
}

/// A clock value that cannot advance any further: `hlc + n` would pass `i64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "horloge saturée : {hlc} + {n} dépasserait la plus grande version possible ; une version aberrante (trop loin dans le futur) a dû être écrite à la main"
)]
pub struct ClockOverflow {
    pub hlc: i64,
    pub n: i64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_arithmetic_is_checked_never_wrapped() {
        assert_eq!(Hlc(5).checked_add(2), Ok(Hlc(7)));
        assert_eq!(Hlc(i64::MAX).checked_add(1), Err(ClockOverflow { hlc: i64::MAX, n: 1 }));
        assert_eq!(Hlc::from_wall_ms(i64::MAX).wall_ms(), i64::MAX >> Hlc::LOGICAL_BITS);
        assert_eq!(Hlc::from_wall_ms(-5), Hlc(0));
        assert_eq!(Hlc::from_wall_ms(i64::MAX).saturating_end_of_ms(), Hlc(i64::MAX));
    }
}
