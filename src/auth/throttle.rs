//! Throttling of password guesses: after `max_failures` failures within `window` for one user name
//! or from one address, further attempts are refused until the oldest of them leaves the window.
//! Owns: the counts (in memory, bounded). Leaves: what counts as a failure (mod.rs).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

/// Keys kept at most; past that, keys whose failures all left the window are dropped.
const MAX_KEYS: usize = 10_000;

pub struct Throttle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn keys(name: &str, from: IpAddr) -> [String; 2] {
    [format!("u:{}", name.to_lowercase()), format!("a:{from}")]
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures: max_failures.max(1) as usize, window, failures: Mutex::new(HashMap::new()) }
    }

    /// How long to wait before trying again, when `name` or `from` failed too often lately.
    pub fn blocked(&self, name: &str, from: IpAddr) -> Option<Duration> {
        self.blocked_at(name, from, Instant::now())
    }

    fn blocked_at(&self, name: &str, from: IpAddr, now: Instant) -> Option<Duration> {
        let Ok(mut failures) = self.failures.lock() else { return None };
        let mut wait: Option<Duration> = None;
        for key in keys(name, from) {
            let Some(times) = failures.get_mut(&key) else { continue };
            while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                times.pop_front();
            }
            if times.len() >= self.max_failures {
                let oldest = times[times.len() - self.max_failures];
                let left = self.window.saturating_sub(now.duration_since(oldest));
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        wait
    }

    pub fn failed(&self, name: &str, from: IpAddr) {
        self.failed_at(name, from, Instant::now());
    }

    fn failed_at(&self, name: &str, from: IpAddr, now: Instant) {
        let Ok(mut failures) = self.failures.lock() else { return };
        if failures.len() >= MAX_KEYS {
            let window = self.window;
            failures.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for key in keys(name, from) {
            let times = failures.entry(key).or_default();
            times.push_back(now);
            while times.len() > self.max_failures {
                times.pop_front();
            }
        }
    }

    /// A success forgets the user name's failures (not the address's).
    pub fn succeeded(&self, name: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&format!("u:{}", name.to_lowercase()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_block_for_the_rest_of_the_window() {
        let throttle = Throttle::new(5, Duration::from_secs(60));
        let (here, there) = (IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2]));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for _ in 0..4 {
            throttle.failed_at("Awa", here, t0);
        }
        assert_eq!(throttle.blocked_at("awa", here, t0), None);
        throttle.failed_at("awa", here, at(10));
        assert_eq!(throttle.blocked_at("AWA", there, at(10)), Some(Duration::from_secs(50)), "by user name, from anywhere");
        assert_eq!(throttle.blocked_at("moussa", here, at(10)), Some(Duration::from_secs(50)), "by address, for any name");
        assert_eq!(throttle.blocked_at("moussa", there, at(10)), None);
        assert_eq!(throttle.blocked_at("awa", here, at(60)), None);
        throttle.succeeded("awa");
        assert_eq!(throttle.blocked_at("awa", there, at(10)), None, "a success forgets the name's failures");
    }
}
