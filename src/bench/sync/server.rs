//! A real `dsms serve` as a child process over the benchmark's regions, to read the memory of a
//! server doing nothing but idle rounds. Owns: the child's config, its life and its `/proc` figures.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::fixture::{REGIONS, mb, status_kb};

/// A server's memory after idle rounds.
pub struct ServerRss {
    pub rss_mb: Option<f64>,
    pub hwm_mb: Option<f64>,
    /// Rounds the server logged before the reading.
    pub rounds: u64,
}

/// Starts `dsms serve` (this executable) on a free loopback port with a round every second, lets
/// it run for `idle`, reads its VmRSS and VmHWM, and kills it.
pub async fn idle_rss(urls: &[String], idle: Duration) -> anyhow::Result<ServerRss> {
    let dir = std::env::temp_dir().join(format!("dsms-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut toml = String::from("listen = \"127.0.0.1:0\"\nsync_interval = \"1s\"\nlog_format = \"json\"\n");
    for (name, url) in REGIONS.iter().zip(urls) {
        toml.push_str(&format!("[[regions]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
    }
    let config = dir.join("dsms.toml");
    std::fs::write(&config, toml)?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take().ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let counting = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut rounds = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("synchronisation terminée") {
                rounds += 1;
            }
        }
        rounds
    });
    tokio::time::sleep(idle).await;
    let reading = ServerRss { rss_mb: mb(status_kb(pid, "VmRSS")), hwm_mb: mb(status_kb(pid, "VmHWM")), rounds: 0 };
    child.start_kill()?;
    child.wait().await?;
    let rounds = counting.await.unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ServerRss { rounds, ..reading })
}
