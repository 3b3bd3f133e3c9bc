//! Region health: ONLINE, WARNING or OFFLINE. Owns: the status rules, what a probe measures
//! (reachability, round trip, the database clock's offset from ours) and the runtime facts the
//! rules read (none of them persisted). Leaves: counting errors (stats.rs), when to probe (mod.rs).
//!
//! Rules, from the latest contact (a probe or the region's part in a sync round):
//! - `OFFLINE`: the latest contact failed.
//! - `WARNING`: reachable, but its clock is off by more than `max_clock_skew` (this server's clock
//!   against its database's: either may be the wrong one), or its feed has been held back by an
//!   open transaction for longer than `max_feed_hold`, or it answers slowly, or its lag is above
//!   the bound, or the last round had errors on a pair touching it, or it has been unstable
//!   (several outages within a few minutes), or its database holds rows in quarantine.
//! - `ONLINE`: reachable and none of the above. One outage followed by a good contact is ONLINE
//!   again at once: recovering is not a warning.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::RegionName;
use crate::domain::version::WallClock;
use crate::store::Store;
use crate::sync::report::RoundReport;

/// A region's status, as the guide names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Online,
    Warning,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "ONLINE",
            Self::Warning => "WARNING",
            Self::Offline => "OFFLINE",
        }
    }
}

/// The bounds the rules use.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Config `max_clock_skew`.
    pub max_clock_skew: Duration,
    /// Config `max_feed_hold`: a feed held back longer by an open transaction is a warning.
    pub max_feed_hold: Duration,
    /// A round trip above this is slow.
    pub slow: Duration,
    /// More pending changes than this is lagging.
    pub max_lag: u64,
    /// This many outages within `unstable_window` make a reachable region unstable.
    pub unstable_outages: usize,
    pub unstable_window: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_clock_skew: Duration::from_secs(2),
            max_feed_hold: Duration::from_secs(60),
            slow: Duration::from_secs(1),
            max_lag: 10_000,
            unstable_outages: 3,
            unstable_window: Duration::from_secs(600),
        }
    }
}

/// One contact with a region.
#[derive(Clone, Debug)]
pub enum Contact {
    Reached {
        /// Round trip, when measured.
        latency: Option<Duration>,
        /// The database clock minus ours, when measured (probes).
        clock_offset: Option<TimeDelta>,
        /// From a sync round: pending changes and the errors of pairs touching this region.
        round: Option<RoundPart>,
    },
    Failed {
        cause: String,
    },
}

/// What a sync round says of a reachable region.
#[derive(Clone, Debug, Default)]
pub struct RoundPart {
    pub pending: u64,
    pub pair_errors: Option<String>,
}

/// A status change, to log and export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: Status,
    pub to: Status,
    pub reason: Option<String>,
    /// The region's first contact: its initial status, not a change of health.
    pub first: bool,
}

/// The runtime health of one region.
#[derive(Clone, Debug)]
pub struct RegionHealth {
    /// `None` before any contact.
    pub reachable: Option<bool>,
    pub last_cause: Option<String>,
    pub latency: Option<Duration>,
    pub clock_offset: Option<TimeDelta>,
    pub pending: Option<u64>,
    pub pair_errors: Option<String>,
    /// Live sales, counted by probes when the data changed since the last count.
    pub ventes: Option<u64>,
    /// Rows in this region's quarantine at the last probe.
    pub quarantined: Option<u64>,
    pub counted_generation: Option<u64>,
    /// What the probes saw of the feed's horizon (PostgreSQL).
    pub feed_hold: super::feed_hold::HoldWatch,
    pub status: Status,
    pub reason: Option<String>,
    /// Starts of recent outages.
    outages: VecDeque<DateTime<Utc>>,
    /// When the newest contact taken into account was made: an older one (a round that began
    /// before a probe but ended after it) cannot override what is known since.
    last_contact: Option<DateTime<Utc>>,
}

impl Default for RegionHealth {
    fn default() -> Self {
        Self {
            reachable: None,
            last_cause: None,
            latency: None,
            clock_offset: None,
            pending: None,
            pair_errors: None,
            ventes: None,
            quarantined: None,
            counted_generation: None,
            feed_hold: super::feed_hold::HoldWatch::default(),
            status: Status::Warning,
            reason: Some("pas encore contactée".into()),
            outages: VecDeque::new(),
            last_contact: None,
        }
    }
}

/// `1,5 s`: French decimal comma.
pub fn seconds_fr(seconds: f64) -> String {
    format!("{seconds:.1} s").replace('.', ",")
}

/// A signed offset as seconds.
pub fn offset_seconds(offset: TimeDelta) -> f64 {
    offset.num_microseconds().map_or(offset.num_milliseconds() as f64 / 1e3, |us| us as f64 / 1e6)
}

impl RegionHealth {
    /// True when the clock offset is beyond the bound.
    pub fn skewed(&self, thresholds: &Thresholds) -> bool {
        self.clock_offset.is_some_and(|o| o.abs().to_std().is_ok_and(|o| o > thresholds.max_clock_skew))
    }

    /// Takes a contact into account; returns the status change, if any.
    pub fn observe(&mut self, contact: &Contact, at: DateTime<Utc>, thresholds: &Thresholds) -> Option<Change> {
        if self.last_contact.is_some_and(|newest| at < newest) {
            return None;
        }
        self.last_contact = Some(at);
        let first = self.reachable.is_none();
        match contact {
            Contact::Reached { latency, clock_offset, round } => {
                self.reachable = Some(true);
                self.last_cause = None;
                self.latency = latency.or(self.latency);
                self.clock_offset = clock_offset.or(self.clock_offset);
                if let Some(round) = round {
                    self.pending = Some(round.pending);
                    self.pair_errors.clone_from(&round.pair_errors);
                }
            }
            Contact::Failed { cause } => {
                if self.reachable != Some(false) {
                    self.outages.push_back(at);
                }
                self.reachable = Some(false);
                self.last_cause = Some(cause.clone());
                self.latency = None;
            }
        }
        let window = TimeDelta::from_std(thresholds.unstable_window).unwrap_or(TimeDelta::MAX);
        while self.outages.front().is_some_and(|t| *t < at - window) {
            self.outages.pop_front();
        }
        let (status, reason) = self.assess(thresholds);
        let change = (status != self.status || first).then(|| Change { from: self.status, to: status, reason: reason.clone(), first });
        self.status = status;
        self.reason = reason;
        change
    }

    fn assess(&self, thresholds: &Thresholds) -> (Status, Option<String>) {
        match self.reachable {
            None => return (Status::Warning, Some("pas encore contactée".into())),
            Some(false) => return (Status::Offline, Some(self.last_cause.clone().unwrap_or_else(|| "injoignable".into()))),
            Some(true) => {}
        }
        let mut reasons = Vec::new();
        if let (true, Some(offset)) = (self.skewed(thresholds), self.clock_offset) {
            reasons.push(format!(
                "horloge décalée de {} (limite {})",
                seconds_fr(offset_seconds(offset)),
                seconds_fr(thresholds.max_clock_skew.as_secs_f64())
            ));
        }
        if let Some(latency) = self.latency.filter(|l| *l > thresholds.slow) {
            reasons.push(format!("réponse lente ({} ms)", latency.as_millis()));
        }
        if let Some(pending) = self.pending.filter(|p| *p > thresholds.max_lag) {
            reasons.push(format!("en retard de {pending} modifications"));
        }
        reasons.extend(self.feed_hold.reason(thresholds.max_feed_hold));
        if let Some(errors) = &self.pair_errors {
            reasons.push(format!("erreurs récentes : {errors}"));
        }
        if let Some(n) = self.quarantined.filter(|n| *n > 0) {
            let lignes = if n == 1 { "1 ligne".to_owned() } else { format!("{n} lignes") };
            reasons.push(format!("{lignes} en quarantaine (illisibles ou trop loin dans le futur, voir /api/quarantine)"));
        }
        if self.outages.len() >= thresholds.unstable_outages {
            reasons.push(format!("instable : {} coupures en {} min", self.outages.len(), thresholds.unstable_window.as_secs() / 60));
        }
        if reasons.is_empty() { (Status::Online, None) } else { (Status::Warning, Some(reasons.join(" ; "))) }
    }
}

/// What a round says of each region it names: a failed contact, or a reached one with its
/// pending changes and the errors of pairs between two reached regions touching it (a pair that
/// failed because the other side was down is that side's error, not this one's).
pub fn round_contacts(report: &RoundReport) -> Vec<(RegionName, Contact)> {
    let reached = |r: &RegionName| report.regions.iter().any(|o| o.region == *r && o.reached());
    report
        .regions
        .iter()
        .map(|outcome| {
            let contact = match &outcome.error {
                Some(cause) => Contact::Failed { cause: cause.clone() },
                None => {
                    let errors: Vec<String> = report
                        .pairs
                        .iter()
                        .filter(|p| (p.source == outcome.region || p.target == outcome.region) && reached(&p.source) && reached(&p.target))
                        .filter_map(|p| p.error.as_ref().map(|e| format!("{} → {} : {e}", p.source, p.target)))
                        .collect();
                    let pair_errors = (!errors.is_empty()).then(|| errors.join(" ; "));
                    let round = Some(RoundPart { pending: outcome.pending, pair_errors });
                    Contact::Reached { latency: outcome.latency, clock_offset: None, round }
                }
            };
            (outcome.region.clone(), contact)
        })
        .collect()
}

/// Probes a region: one round trip reading its clock. The offset is its clock minus ours at the
/// midpoint of the round trip (ours is the injected clock, so tests can skew it).
pub async fn probe(store: &dyn Store, clock: &WallClock) -> Contact {
    let ours_before = clock();
    let started = Instant::now();
    let answer = store.now().await;
    let round_trip = started.elapsed();
    match answer {
        Ok(theirs) => {
            let half = TimeDelta::from_std(round_trip / 2).unwrap_or(TimeDelta::zero());
            let offset = theirs - (ours_before + half);
            Contact::Reached { latency: Some(round_trip), clock_offset: Some(offset), round: None }
        }
        Err(e) => Contact::Failed { cause: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reached() -> Contact {
        Contact::Reached { latency: Some(Duration::from_millis(3)), clock_offset: Some(TimeDelta::milliseconds(1)), round: None }
    }

    fn failed() -> Contact {
        Contact::Failed { cause: "connexion refusée".into() }
    }

    #[test]
    fn one_outage_is_offline_then_online_again() {
        let (t, now) = (Thresholds::default(), Utc::now());
        let mut health = RegionHealth::default();
        assert_eq!(health.observe(&reached(), now, &t).map(|c| c.to), Some(Status::Online));
        let change = health.observe(&failed(), now, &t).unwrap();
        assert_eq!((change.from, change.to), (Status::Online, Status::Offline));
        assert_eq!(change.reason.as_deref(), Some("connexion refusée"));
        assert_eq!(health.observe(&failed(), now, &t), None, "still offline: no change");
        assert_eq!(health.observe(&reached(), now, &t).map(|c| c.to), Some(Status::Online));
    }

    #[test]
    fn a_failed_pair_is_held_against_reached_regions_only() {
        use crate::sync::report::{PairOutcome, RegionOutcome, RoundStatus};
        let name = RegionName::new;
        let outcome = |r: &str, error: Option<&str>| RegionOutcome {
            region: name(r),
            error: error.map(str::to_owned),
            latency: None,
            rows_applied: 0,
            pending: 7,
            round_trips: 0,
        };
        let pair = |s: &str, t: &str| PairOutcome {
            source: name(s),
            target: name(t),
            rows_read: 0,
            rows_skipped: 0,
            rows_applied: 0,
            error: Some("délai".into()),
        };
        let report = RoundReport {
            started_at: Utc::now(),
            duration: Duration::from_millis(5),
            status: RoundStatus::Partial,
            regions: vec![outcome("Dakar", None), outcome("Thies", None), outcome("Saint-Louis", Some("refusée"))],
            pairs: vec![pair("Dakar", "Thies"), pair("Dakar", "Saint-Louis")],
            conflicts: 0,
            restores: Vec::new(),
        };
        let contacts = round_contacts(&report);
        let pair_errors = |i: usize| match &contacts[i].1 {
            Contact::Reached { round: Some(round), .. } => (round.pending, round.pair_errors.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(pair_errors(0), (7, Some("Dakar → Thies : délai".into())), "not Dakar → Saint-Louis: Saint-Louis was down");
        assert_eq!(pair_errors(1).1.as_deref(), Some("Dakar → Thies : délai"));
        assert!(matches!(&contacts[2].1, Contact::Failed { cause } if cause == "refusée"));
    }

    #[test]
    fn skew_slowness_lag_pair_errors_and_instability_warn() {
        let (t, now) = (Thresholds::default(), Utc::now());
        let warn = |contact: Contact| {
            let mut health = RegionHealth::default();
            health.observe(&contact, now, &t);
            (health.status, health.reason.unwrap_or_default())
        };
        let skewed = Contact::Reached { latency: None, clock_offset: Some(TimeDelta::milliseconds(-3500)), round: None };
        assert_eq!(warn(skewed), (Status::Warning, "horloge décalée de -3,5 s (limite 2,0 s)".into()));
        let slow = Contact::Reached { latency: Some(Duration::from_millis(1500)), clock_offset: None, round: None };
        assert_eq!(warn(slow).0, Status::Warning);
        let lagging = Contact::Reached { latency: None, clock_offset: None, round: Some(RoundPart { pending: 10_001, pair_errors: None }) };
        assert_eq!(warn(lagging).0, Status::Warning);
        let pair =
            Contact::Reached { latency: None, clock_offset: None, round: Some(RoundPart { pending: 0, pair_errors: Some("x".into()) }) };
        assert_eq!(warn(pair).0, Status::Warning);

        let mut quarantined = RegionHealth { quarantined: Some(2), ..RegionHealth::default() };
        quarantined.observe(&reached(), now, &t);
        assert_eq!(quarantined.status, Status::Warning);
        assert!(quarantined.reason.as_deref().unwrap().starts_with("2 lignes en quarantaine"));

        let mut flapping = RegionHealth::default();
        for _ in 0..3 {
            flapping.observe(&failed(), now, &t);
            flapping.observe(&reached(), now, &t);
        }
        assert_eq!(flapping.status, Status::Warning);
        assert!(flapping.reason.as_deref().unwrap().starts_with("instable : 3 coupures"));
        let later = now + TimeDelta::minutes(11);
        flapping.observe(&reached(), later, &t);
        assert_eq!(flapping.status, Status::Online, "old outages are forgotten");
    }
}
