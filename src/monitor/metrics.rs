//! Prometheus metrics. Owns: the registry of this server (one per `Monitor`, so two apps in one
//! process never mix), metric names and labels, the text exposition. Leaves: when to count (mod.rs,
//! the HTTP middleware in web/monitor_api.rs).

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::stats::status_name;
use crate::domain::Regions;
use crate::sync::report::{RoundReport, RoundStatus};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const ROUND_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const HTTP_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every metric this server exports.
pub struct Metrics {
    registry: Registry,
    rounds: IntCounterVec,
    round_duration: Histogram,
    rows_applied: IntCounterVec,
    rows_read: IntCounterVec,
    rows_skipped: IntCounterVec,
    conflicts: IntCounter,
    restores: IntCounterVec,
    round_trips: IntCounterVec,
    region_up: IntGaugeVec,
    region_lag: IntGaugeVec,
    region_offset: GaugeVec,
    clock_skewed: IntGaugeVec,
    quarantined: IntGaugeVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
}

/// Which cache a hit or miss is about (label `cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheName {
    Analytics,
    TotalVentes,
}

impl CacheName {
    fn label(self) -> &'static str {
        match self {
            Self::Analytics => "analytics",
            Self::TotalVentes => "total_ventes",
        }
    }
}

impl Metrics {
    /// Registers every metric; label sets known in advance (statuses, regions) start at zero so
    /// dashboards see them before the first event.
    pub fn new(regions: &Regions) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let rounds = IntCounterVec::new(Opts::new("dsms_sync_rounds_total", "Sync rounds, by outcome"), &["status"])?;
        let round_duration = Histogram::with_opts(
            HistogramOpts::new("dsms_sync_round_duration_seconds", "Duration of sync rounds").buckets(ROUND_BUCKETS.into()),
        )?;
        let rows_applied = IntCounterVec::new(
            Opts::new("dsms_sync_rows_applied_total", "Rows written into a target region by sync, by source and target"),
            &["source", "target"],
        )?;
        let rows_read = IntCounterVec::new(
            Opts::new("dsms_sync_rows_read_total", "Rows read from a source region's feed for a target by sync, by source and target"),
            &["source", "target"],
        )?;
        let rows_skipped = IntCounterVec::new(
            Opts::new(
                "dsms_sync_rows_skipped_total",
                "Rows of a source region's feed not read for a target that already held them (apply log), by source and target",
            ),
            &["source", "target"],
        )?;
        let round_trips = IntCounterVec::new(
            Opts::new(
                "dsms_sync_round_trips_total",
                "Round trips sync rounds made to a region's database (statements that waited for an answer; none for a local SQLite file), by region",
            ),
            &["region"],
        )?;
        let conflicts = IntCounter::new("dsms_conflicts_total", "Concurrent writes logged as conflicts by sync rounds")?;
        let restores = IntCounterVec::new(
            Opts::new(
                "dsms_sync_restores_detected_total",
                "Regions found gone back in time (restored from a backup) by sync rounds, and given a new identity",
            ),
            &["region"],
        )?;
        let region_up = IntGaugeVec::new(Opts::new("dsms_region_up", "1 when the region's last contact succeeded, else 0"), &["region"])?;
        let region_lag = IntGaugeVec::new(
            Opts::new("dsms_region_lag_rows", "Changes held by the region not yet received by every other region"),
            &["region"],
        )?;
        let region_offset = GaugeVec::new(
            Opts::new(
                "dsms_region_clock_offset_seconds",
                "The region database's clock minus this server's, corrected by half the round trip",
            ),
            &["region"],
        )?;
        let clock_skewed = IntGaugeVec::new(
            Opts::new(
                "dsms_clock_skew_exceeded",
                "1 when this server's clock and the region database's differ by more than max_clock_skew, else 0",
            ),
            &["region"],
        )?;
        let quarantined = IntGaugeVec::new(
            Opts::new("dsms_quarantined_rows", "Rows in the region's quarantine (undecodable, or versions too far in the future)"),
            &["region"],
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new("dsms_http_requests_total", "HTTP requests, by method, route template and status"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("dsms_http_request_duration_seconds", "HTTP request duration, by method and route template")
                .buckets(HTTP_BUCKETS.into()),
            &["method", "route"],
        )?;
        let cache_hits = IntCounterVec::new(Opts::new("dsms_cache_hits_total", "Answers served from a cache"), &["cache"])?;
        let cache_misses =
            IntCounterVec::new(Opts::new("dsms_cache_misses_total", "Answers computed because the cache had none"), &["cache"])?;
        registry.register(Box::new(rounds.clone()))?;
        registry.register(Box::new(round_duration.clone()))?;
        registry.register(Box::new(rows_applied.clone()))?;
        registry.register(Box::new(rows_read.clone()))?;
        registry.register(Box::new(rows_skipped.clone()))?;
        registry.register(Box::new(conflicts.clone()))?;
        registry.register(Box::new(restores.clone()))?;
        registry.register(Box::new(round_trips.clone()))?;
        registry.register(Box::new(region_up.clone()))?;
        registry.register(Box::new(region_lag.clone()))?;
        registry.register(Box::new(region_offset.clone()))?;
        registry.register(Box::new(clock_skewed.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        registry.register(Box::new(cache_misses.clone()))?;
        for status in [RoundStatus::Success, RoundStatus::Partial, RoundStatus::Failed] {
            rounds.with_label_values(&[status_name(status)]);
        }
        for region in regions.iter() {
            region_up.with_label_values(&[region.as_str()]);
            restores.with_label_values(&[region.as_str()]);
            round_trips.with_label_values(&[region.as_str()]);
            region_lag.with_label_values(&[region.as_str()]);
            clock_skewed.with_label_values(&[region.as_str()]);
            quarantined.with_label_values(&[region.as_str()]);
        }
        for cache in [CacheName::Analytics, CacheName::TotalVentes] {
            cache_hits.with_label_values(&[cache.label()]);
            cache_misses.with_label_values(&[cache.label()]);
        }
        Ok(Self {
            registry,
            rounds,
            round_duration,
            rows_applied,
            rows_read,
            rows_skipped,
            conflicts,
            restores,
            round_trips,
            region_up,
            region_lag,
            region_offset,
            clock_skewed,
            quarantined,
            http_requests,
            http_duration,
            cache_hits,
            cache_misses,
        })
    }

    pub fn record_round(&self, report: &RoundReport) {
        self.rounds.with_label_values(&[status_name(report.status)]).inc();
        self.round_duration.observe(report.duration.as_secs_f64());
        for pair in report.pairs.iter().filter(|p| p.rows_applied > 0) {
            self.rows_applied.with_label_values(&[pair.source.as_str(), pair.target.as_str()]).inc_by(pair.rows_applied);
        }
        for pair in report.pairs.iter().filter(|p| p.rows_read > 0) {
            self.rows_read.with_label_values(&[pair.source.as_str(), pair.target.as_str()]).inc_by(pair.rows_read);
        }
        for pair in report.pairs.iter().filter(|p| p.rows_skipped > 0) {
            self.rows_skipped.with_label_values(&[pair.source.as_str(), pair.target.as_str()]).inc_by(pair.rows_skipped);
        }
        self.conflicts.inc_by(report.conflicts);
        for restore in &report.restores {
            self.restores.with_label_values(&[restore.region.as_str()]).inc();
        }
        for region in report.regions.iter().filter(|r| r.round_trips > 0) {
            self.round_trips.with_label_values(&[region.region.as_str()]).inc_by(region.round_trips);
        }
        for region in report.regions.iter().filter(|r| r.reached()) {
            self.region_lag.with_label_values(&[region.region.as_str()]).set(i64::try_from(region.pending).unwrap_or(i64::MAX));
        }
    }

    pub fn region_up(&self, region: &str, up: bool) {
        self.region_up.with_label_values(&[region]).set(i64::from(up));
    }

    /// The region's clock minus ours, in seconds (negative: behind).
    pub fn clock_offset(&self, region: &str, seconds: f64) {
        self.region_offset.with_label_values(&[region]).set(seconds);
    }

    /// Whether the clocks of this server and the region's database differ beyond the bound.
    pub fn clock_skewed(&self, region: &str, skewed: bool) {
        self.clock_skewed.with_label_values(&[region]).set(i64::from(skewed));
    }

    /// Rows in the region's quarantine.
    pub fn quarantined(&self, region: &str, rows: u64) {
        self.quarantined.with_label_values(&[region]).set(i64::try_from(rows).unwrap_or(i64::MAX));
    }

    /// One HTTP request: `route` is the matched path template (`/api/ventes/{id}`), never the raw URL.
    pub fn http(&self, method: &str, route: &str, status: &str, elapsed: Duration) {
        self.http_requests.with_label_values(&[method, route, status]).inc();
        self.http_duration.with_label_values(&[method, route]).observe(elapsed.as_secs_f64());
    }

    pub fn cache(&self, cache: CacheName, hit: bool) {
        let counter = if hit { &self.cache_hits } else { &self.cache_misses };
        counter.with_label_values(&[cache.label()]).inc();
    }

    /// Every metric in the text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
