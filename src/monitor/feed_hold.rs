//! Held-back feeds: a PostgreSQL feed reads only below the oldest transaction still running in
//! its cluster, so one session left idle in a transaction — in any database of the cluster —
//! stalls that region's replication. Owns: how long a feed has been held at one horizon, and how
//! the region's status says so. Leaves: finding the blocker (`Store::feed_hold`), when to look
//! (the monitor's probes), the other status rules (health.rs).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::health::seconds_fr;
use crate::store::FeedHold;

/// What the probes saw of a region's feed horizon.
#[derive(Clone, Debug, Default)]
pub struct HoldWatch {
    /// The held horizon and when a probe first saw the feed held there.
    first_seen: Option<(i64, DateTime<Utc>)>,
    /// The latest look, and when.
    current: Option<(FeedHold, DateTime<Utc>)>,
}

impl HoldWatch {
    /// Takes a probe's look into account (`None`: nothing held, or the region was not reached).
    pub fn observe(&mut self, hold: Option<FeedHold>, at: DateTime<Utc>) {
        self.first_seen = match (&hold, self.first_seen) {
            (Some(h), Some((horizon, first))) if horizon == h.horizon => Some((horizon, first)),
            (Some(h), _) => Some((h.horizon, at)),
            (None, _) => None,
        };
        self.current = hold.map(|h| (h, at));
    }

    /// How long the feed has been held at its horizon: as long as the blocking transaction has
    /// been open when its start is visible, else since a probe first saw it held there.
    pub fn held_for(&self) -> Option<Duration> {
        let (hold, at) = self.current.as_ref()?;
        let seen = self.first_seen.and_then(|(_, first)| (*at - first).to_std().ok());
        let age = hold.blocker.as_ref().and_then(|b| b.age);
        seen.max(age)
    }

    /// Rows committed behind the held horizon (they reach no other region until it moves).
    pub fn pending(&self) -> Option<u64> {
        self.current.as_ref().map(|(h, _)| h.pending)
    }

    /// The status reason once the feed has been held longer than `max_hold`, in French.
    pub fn reason(&self, max_hold: Duration) -> Option<String> {
        let held = self.held_for().filter(|held| *held > max_hold)?;
        let (hold, _) = self.current.as_ref()?;
        let who = match &hold.blocker {
            Some(b) => {
                let database = b.database.as_deref().map_or_else(|| "base inconnue".to_owned(), |d| format!("base « {d} »"));
                let age = b.age.map_or_else(
                    || ", âge inconnu (droit pg_monitor requis)".to_owned(),
                    |a| format!(", ouverte depuis {}", seconds_fr(a.as_secs_f64())),
                );
                let state = b.state.as_deref().map(|s| format!(", {s}")).unwrap_or_default();
                format!("la transaction du processus {} ({database}{age}{state})", b.pid)
            }
            None => "une transaction sans session visible (transaction préparée ?)".to_owned(),
        };
        let pending = match hold.pending {
            0 => "aucune modification en attente pour l'instant".to_owned(),
            1 => "1 modification en attente derrière elle".to_owned(),
            n => format!("{n} modifications en attente derrière elle"),
        };
        Some(format!("réplication retenue depuis {} par {who} ; {pending}", seconds_fr(held.as_secs_f64())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Blocker;

    fn hold(horizon: i64, age: Option<u64>) -> FeedHold {
        let blocker = Blocker { pid: 4242, database: Some("autre".into()), age: age.map(Duration::from_secs), state: None };
        FeedHold { horizon, pending: 3, blocker: Some(blocker) }
    }

    #[test]
    fn a_feed_held_at_one_horizon_longer_than_the_bound_is_named_with_its_blocker() {
        let (t0, max) = (Utc::now(), Duration::from_secs(60));
        let mut watch = HoldWatch::default();
        watch.observe(Some(hold(100, None)), t0);
        assert_eq!(watch.reason(max), None, "just seen");
        watch.observe(Some(hold(100, None)), t0 + chrono::TimeDelta::seconds(61));
        let reason = watch.reason(max).unwrap();
        assert!(reason.contains("processus 4242") && reason.contains("« autre »") && reason.contains("61,0 s"), "{reason}");
        assert!(reason.contains("3 modifications en attente") && reason.contains("pg_monitor"), "{reason}");
        assert_eq!(watch.pending(), Some(3));
        watch.observe(Some(hold(101, None)), t0 + chrono::TimeDelta::seconds(62));
        assert_eq!(watch.reason(max), None, "the horizon moved: a new hold starts");
        watch.observe(Some(hold(101, Some(90))), t0 + chrono::TimeDelta::seconds(63));
        assert!(watch.reason(max).unwrap().contains("ouverte depuis 90,0 s"), "a visible transaction age counts at once");
        watch.observe(None, t0 + chrono::TimeDelta::seconds(64));
        assert_eq!((watch.reason(max), watch.pending()), (None, None));
    }
}
