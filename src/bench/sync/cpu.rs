//! CPU time used during a timed part by this process and by each region's PostgreSQL server (its
//! postmaster and every backend), read from `/proc`. On a small machine shared with other work,
//! wall time alone cannot say who did the work, nor whether the work itself grew.
//! Owns: that accounting. Leaves: everything else.

use std::time::Instant;

use serde_json::json;

/// Linux reports process times in USER_HZ ticks, 100 per second on every mainstream platform.
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds so far: this process, then one figure per cluster (by port).
pub struct CpuSnapshot {
    at: Instant,
    own: f64,
    clusters: Vec<f64>,
}

impl CpuSnapshot {
    pub fn take(ports: &[u16]) -> Self {
        let processes = processes();
        let clusters = ports.iter().map(|&port| cluster_seconds(&processes, port)).collect();
        Self { at: Instant::now(), own: own_seconds(), clusters }
    }

    /// CPU seconds used since this snapshot, per `names` (one per port), and how many cores
    /// that kept busy on average.
    pub fn since(&self, ports: &[u16], names: &[&str]) -> serde_json::Value {
        let now = Self::take(ports);
        let wall = self.at.elapsed().as_secs_f64();
        let own = now.own - self.own;
        let mut total = own;
        let mut fields = serde_json::Map::new();
        fields.insert("bench_process".into(), json!(own));
        for ((name, before), after) in names.iter().zip(&self.clusters).zip(&now.clusters) {
            total += after - before;
            fields.insert(format!("pg_{name}"), json!(after - before));
        }
        fields.insert("total".into(), json!(total));
        fields.insert("wall".into(), json!(wall));
        fields.insert("cores_busy".into(), json!(total / wall));
        serde_json::Value::Object(fields)
    }
}

/// A process as `/proc/<pid>/stat` and `cmdline` describe it.
struct Process {
    pid: u32,
    ppid: u32,
    /// utime + stime, and cutime + cstime (children already reaped).
    own_ticks: u64,
    reaped_ticks: u64,
    cmdline: Vec<String>,
}

fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which may hold spaces, in parentheses.
            let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
            let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            Some(Process {
                pid,
                ppid: u32::try_from(number(1)?).ok()?,
                own_ticks: number(11)? + number(12)?,
                reaped_ticks: number(13)? + number(14)?,
                cmdline,
            })
        })
        .collect()
}

/// The postmaster listening on `port` (started by `pg_ctl … -o "-p PORT"`), with its children.
fn cluster_seconds(processes: &[Process], port: u16) -> f64 {
    let port = port.to_string();
    let is_postmaster = |p: &Process| {
        p.cmdline.first().is_some_and(|a| a.ends_with("postgres")) && p.cmdline.windows(2).any(|w| w[0] == "-p" && w[1] == port)
    };
    let Some(postmaster) = processes.iter().find(|p| is_postmaster(p)) else { return 0.0 };
    let children: u64 = processes.iter().filter(|p| p.ppid == postmaster.pid).map(|p| p.own_ticks).sum();
    (postmaster.own_ticks + postmaster.reaped_ticks + children) as f64 / TICKS_PER_S
}

fn own_seconds() -> f64 {
    processes_self().unwrap_or(0) as f64 / TICKS_PER_S
}

fn processes_self() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}
