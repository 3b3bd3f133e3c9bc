//! Sales analytics and the caches in front of expensive reads. Owns: turning one region's
//! aggregates into the per-region figures (exact totals, averages rounded to the cent, every day
//! of the window), and the moka caches keyed by the data generation: every local write and every
//! round that applied rows starts a new generation, so nothing computed before a change is served
//! after it, even when a computation was in flight during the change; and the monitor's cached
//! reads (`totalVentes`, analytics) from the first reachable region. Leaves: SQL (store/), JSON (web/).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use moka::future::Cache;
use rust_decimal::{Decimal, RoundingStrategy};

use super::health::Status;
use super::metrics::CacheName;
use super::{Monitor, MonitorError};
use crate::domain::DaySales;
use crate::domain::RegionSales;
use crate::domain::{RegionName, Regions, Vente};
use crate::store::Store;

/// Days in the per-day series, today included.
pub const DAYS: u32 = 30;
/// Newest sales listed per region.
pub const RECENT: u32 = 10;

/// Figures for one region (by the sale's `region`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionAnalytics {
    pub region: RegionName,
    pub count: u64,
    pub total: Decimal,
    /// `total / count` rounded to the cent (half away from zero); 0 without sales.
    pub average: Decimal,
    pub today_count: u64,
    pub today_total: Decimal,
    /// Exactly `DAYS` entries, oldest first, days without sales at zero.
    pub per_day: Vec<DaySales>,
    /// Newest write first, at most `RECENT`.
    pub recent: Vec<Vente>,
}

/// The whole answer of `/api/analytics`.
#[derive(Clone, Debug)]
pub struct Analytics {
    /// The region whose database answered (the first reachable one; all hold every sale).
    pub source: RegionName,
    pub computed_at: DateTime<Utc>,
    pub today: NaiveDate,
    /// Configured regions first (in order, even without sales), then any other `region` value found.
    pub regions: Vec<RegionAnalytics>,
    /// All regions together (`recent`: the newest writes overall).
    pub all: RegionAnalytics,
}

pub fn average(total: Decimal, count: u64) -> Decimal {
    if count == 0 {
        return Decimal::new(0, 2);
    }
    let mut average = (total / Decimal::from(count)).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    average.rescale(2);
    average
}

/// The first day of the window ending `today`.
pub fn window_start(today: NaiveDate) -> NaiveDate {
    today.checked_sub_days(Days::new(u64::from(DAYS - 1))).unwrap_or(today)
}

fn cents(mut value: Decimal) -> Decimal {
    value.rescale(2);
    value
}

fn region_figures(region: RegionName, sales: Option<&RegionSales>, today: NaiveDate) -> RegionAnalytics {
    let start = window_start(today);
    let per_day: Vec<DaySales> = start
        .iter_days()
        .take(DAYS as usize)
        .map(|date| {
            let found = sales.and_then(|s| s.per_day.iter().find(|d| d.date == date));
            DaySales { date, count: found.map_or(0, |d| d.count), total: cents(found.map_or(Decimal::ZERO, |d| d.total)) }
        })
        .collect();
    let (count, total) = sales.map_or((0, Decimal::ZERO), |s| (s.count, s.total));
    let today_sales = per_day.last().filter(|d| d.date == today);
    RegionAnalytics {
        region,
        count,
        total: cents(total),
        average: average(total, count),
        today_count: today_sales.map_or(0, |d| d.count),
        today_total: cents(today_sales.map_or(Decimal::ZERO, |d| d.total)),
        per_day,
        recent: sales.map(|s| s.recent.clone()).unwrap_or_default(),
    }
}

/// The `RECENT` newest writes, newest first (the listing order: `updated_at`, then id).
fn newest<'a>(ventes: impl Iterator<Item = &'a Vente>) -> Vec<Vente> {
    let mut all: Vec<&Vente> = ventes.collect();
    all.sort_by_key(|v| std::cmp::Reverse((v.updated_at, v.id)));
    all.into_iter().take(RECENT as usize).cloned().collect()
}

/// Builds the answer from one region's aggregates.
pub fn summarize(
    configured: &Regions,
    source: RegionName,
    rows: &[RegionSales],
    today: NaiveDate,
    computed_at: DateTime<Utc>,
) -> Analytics {
    let mut regions: Vec<RegionAnalytics> =
        configured.iter().map(|r| region_figures(r.clone(), rows.iter().find(|s| s.region == *r), today)).collect();
    for extra in rows.iter().filter(|s| !configured.iter().any(|r| *r == s.region)) {
        regions.push(region_figures(extra.region.clone(), Some(extra), today));
    }
    let count = regions.iter().map(|r| r.count).sum();
    let total = cents(regions.iter().map(|r| r.total).sum());
    let per_day = (0..DAYS as usize)
        .map(|i| DaySales {
            date: regions.first().and_then(|r| r.per_day.get(i)).map_or(today, |d| d.date),
            count: regions.iter().filter_map(|r| r.per_day.get(i)).map(|d| d.count).sum(),
            total: cents(regions.iter().filter_map(|r| r.per_day.get(i)).map(|d| d.total).sum()),
        })
        .collect();
    let all = RegionAnalytics {
        region: RegionName::new("*"),
        count,
        total,
        average: average(total, count),
        today_count: regions.iter().map(|r| r.today_count).sum(),
        today_total: cents(regions.iter().map(|r| r.today_total).sum()),
        per_day,
        // Each region's newest hold the newest overall.
        recent: newest(regions.iter().flat_map(|r| r.recent.iter())),
    };
    Analytics { source, computed_at, today, regions, all }
}

/// Whether an answer came from a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
}

/// The caches of expensive reads, keyed by data generation.
pub struct Caches {
    analytics: Cache<(u64, NaiveDate), Arc<Analytics>>,
    total_ventes: Cache<u64, u64>,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            // A few generations at most: older keys are never asked for again.
            analytics: Cache::builder().max_capacity(4).time_to_live(Duration::from_secs(3600)).build(),
            total_ventes: Cache::builder().max_capacity(4).build(),
        }
    }
}

impl Caches {
    /// Drops every entry (a new generation has begun).
    pub fn invalidate(&self) {
        self.analytics.invalidate_all();
        self.total_ventes.invalidate_all();
    }

    /// The analytics of `generation` and `today`, computed once however many ask at the same time.
    pub async fn analytics<E: Send + Sync + 'static>(
        &self,
        generation: u64,
        today: NaiveDate,
        compute: impl Future<Output = Result<Arc<Analytics>, E>>,
    ) -> Result<(Arc<Analytics>, CacheOutcome), Arc<E>> {
        let key = (generation, today);
        if let Some(found) = self.analytics.get(&key).await {
            return Ok((found, CacheOutcome::Hit));
        }
        self.analytics.try_get_with(key, compute).await.map(|v| (v, CacheOutcome::Miss))
    }

    /// The live sales count of `generation`.
    pub async fn total_ventes<E: Send + Sync + 'static>(
        &self,
        generation: u64,
        compute: impl Future<Output = Result<u64, E>>,
    ) -> Result<(u64, CacheOutcome), Arc<E>> {
        if let Some(found) = self.total_ventes.get(&generation).await {
            return Ok((found, CacheOutcome::Hit));
        }
        self.total_ventes.try_get_with(generation, compute).await.map(|v| (v, CacheOutcome::Miss))
    }
}

/// The cached reads of the monitor: `totalVentes` and the analytics.
impl Monitor {
    /// Indices of regions in configuration order, those not known to be OFFLINE first.
    fn read_order(&self, include_offline: bool) -> Vec<usize> {
        let state = self.state();
        let offline = |i: &usize| state.health[*i].status == Status::Offline;
        let mut order: Vec<usize> = (0..self.gates.len()).filter(|i| !offline(i)).collect();
        if include_offline {
            order.extend((0..self.gates.len()).filter(offline));
        }
        order
    }

    /// Live sales in the first reachable region, cached until the data changes; when no region
    /// answers, the last value known.
    pub async fn total_ventes(&self) -> u64 {
        let count = async {
            for i in self.read_order(false) {
                match self.gates[i].count_live().await {
                    Ok(n) => return Ok(n),
                    Err(e) => tracing::debug!(region = %self.gates[i].region(), error = %e, "comptage impossible"),
                }
            }
            Err(MonitorError::NoRegionReachable)
        };
        match self.caches.total_ventes(self.generation(), count).await {
            Ok((n, outcome)) => {
                self.metrics.cache(CacheName::TotalVentes, outcome == CacheOutcome::Hit);
                self.last_total.store(n, Ordering::Relaxed);
                n
            }
            Err(_) => self.last_total.load(Ordering::Relaxed),
        }
    }

    /// Sales analytics from the first reachable region, cached until the data changes.
    pub async fn analytics(&self) -> Result<(Arc<Analytics>, CacheOutcome), MonitorError> {
        let today = (self.clock)().date_naive();
        let compute = async {
            for i in self.read_order(true) {
                match self.gates[i].analytics(window_start(today), today, RECENT).await {
                    Ok(rows) => {
                        let source = self.gates[i].region().clone();
                        return Ok(Arc::new(summarize(&self.regions, source, &rows, today, (self.clock)())));
                    }
                    Err(e) if e.is_unavailable() => continue,
                    Err(e) => return Err(MonitorError::Store(e)),
                }
            }
            Err(MonitorError::NoRegionReachable)
        };
        let (answer, outcome) = self.caches.analytics(self.generation(), today, compute).await.map_err(|e| match &*e {
            MonitorError::NoRegionReachable => MonitorError::NoRegionReachable,
            other => MonitorError::Internal(other.to_string()),
        })?;
        self.metrics.cache(CacheName::Analytics, outcome == CacheOutcome::Hit);
        Ok((answer, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn averages_are_exact_to_the_cent() {
        assert_eq!(average(d("10.00"), 3).to_string(), "3.33");
        assert_eq!(average(d("0.05"), 2).to_string(), "0.03", "half away from zero");
        assert_eq!(average(d("750000.50"), 1).to_string(), "750000.50");
        assert_eq!(average(Decimal::ZERO, 0).to_string(), "0.00");
    }

    #[test]
    fn every_day_of_the_window_is_listed_and_configured_regions_come_first() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let regions = Regions::new(vec![RegionName::new("Dakar"), RegionName::new("Thies")]);
        let thies = RegionSales {
            region: RegionName::new("Thies"),
            count: 2,
            total: d("1500.5"),
            per_day: vec![
                DaySales { date: today, count: 1, total: d("500") },
                DaySales { date: window_start(today), count: 1, total: d("1000.5") },
            ],
            recent: Vec::new(),
        };
        let other = RegionSales { region: RegionName::new("Kaolack"), count: 1, total: d("1"), per_day: Vec::new(), recent: Vec::new() };
        let a = summarize(&regions, RegionName::new("Dakar"), &[thies, other], today, Utc::now());
        let names: Vec<_> = a.regions.iter().map(|r| r.region.as_str()).collect();
        assert_eq!(names, ["Dakar", "Thies", "Kaolack"]);
        let t = &a.regions[1];
        assert_eq!((t.count, t.total.to_string(), t.average.to_string()), (2, "1500.50".into(), "750.25".into()));
        assert_eq!((t.today_count, t.today_total.to_string()), (1, "500.00".into()));
        assert_eq!(t.per_day.len(), DAYS as usize);
        assert_eq!((t.per_day[0].date, t.per_day[0].count), (window_start(today), 1));
        assert_eq!(a.regions[0].per_day.iter().map(|d| d.count).sum::<u64>(), 0);
        assert_eq!((a.all.count, a.all.total.to_string()), (3, "1501.50".into()));
        assert_eq!(a.all.per_day[DAYS as usize - 1].total.to_string(), "500.00");
    }
}
