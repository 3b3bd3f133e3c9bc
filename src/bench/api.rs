//! `dsms bench api`: the real server over loopback, its first region pre-filled, driven by
//! concurrent keep-alive HTTP/1.1 clients for a bounded time. Prints requests per second and
//! latency percentiles as JSON lines. Owns: the load loop. Leaves: serving (app.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{BenchBackend, fill, open, percentile, tempdir};
use crate::app::App;
use crate::config::{Config, DatabaseUrl};
use crate::testkit::pg::PgCluster;

/// What one run measures.
pub struct ApiBench {
    pub rows: u64,
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub path: String,
    pub backend: BenchBackend,
}

pub async fn run(bench: ApiBench) -> anyhow::Result<()> {
    anyhow::ensure!(bench.clients > 0, "--clients doit être au moins 1");
    anyhow::ensure!(bench.path.starts_with('/'), "--path doit commencer par /");
    let dir = tempdir()?;
    // Kept alive until the end: the cluster stops when dropped.
    let (url, backend, _cluster) = match bench.backend {
        BenchBackend::Postgres => {
            let cluster = tokio::task::spawn_blocking(PgCluster::start).await??;
            (DatabaseUrl::Postgres(cluster.create_database("bench")?), "postgres", Some(cluster))
        }
        BenchBackend::Sqlite | BenchBackend::Both => (DatabaseUrl::Sqlite(dir.join("dakar.db")), "sqlite", None),
    };
    {
        let store = open(&url).await?;
        let seconds = fill(store.as_ref(), bench.rows).await?;
        store.analyze().await?;
        println!("{}", json!({"bench": "api.fill", "backend": backend, "rows": bench.rows, "seconds": seconds}));
    }
    let mut config = Config::embedded(&dir);
    config.regions[0].url = url;
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_interval = None;
    let app = App::build(config).await?;
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));

    // The first request after start (or after any write) pays for counting the sales.
    let mut client = Client::connect(addr).await?;
    let started = Instant::now();
    client.get(&bench.path).await?;
    let cold_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("{}", json!({"bench": "api.cold", "backend": backend, "path": bench.path, "rows": bench.rows, "ms": cold_ms}));

    let result = drive(addr, &bench).await;
    stop.cancel();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    let (requests, errors, mut latencies) = result?;
    latencies.sort_unstable_by(f64::total_cmp);
    let seconds = bench.duration.as_secs_f64();
    let ms = |p: f64| percentile(&latencies, p) / 1000.0;
    println!(
        "{}",
        json!({
            "bench": "api.load", "backend": backend, "path": bench.path, "rows": bench.rows, "clients": bench.clients,
            "seconds": seconds, "requests": requests, "errors": errors, "req_per_s": requests as f64 / seconds,
            "p50_ms": ms(0.50), "p99_ms": ms(0.99), "max_ms": ms(1.0),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        })
    );
    anyhow::ensure!(errors == 0, "{errors} requêtes en erreur");
    Ok(())
}

/// Runs every client through the warm-up, then the measured window; returns the requests that
/// started in the window, the errors, and their latencies in microseconds.
async fn drive(addr: std::net::SocketAddr, bench: &ApiBench) -> anyhow::Result<(u64, u64, Vec<f64>)> {
    let measure_from = Instant::now() + bench.warmup;
    let until = measure_from + bench.duration;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(bench.clients);
    for _ in 0..bench.clients {
        let (path, errors) = (bench.path.clone(), errors.clone());
        let mut client = Client::connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(64 * 1024);
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                let ok = client.get(&path).await.is_ok();
                if started >= measure_from {
                    if ok {
                        latencies.push(started.elapsed().as_secs_f64() * 1e6);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !ok {
                    // A broken connection is replaced; a dead server ends the run.
                    match Client::connect(addr).await {
                        Ok(fresh) => client = fresh,
                        Err(_) => break,
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    Ok((all.len() as u64, errors.load(Ordering::Relaxed), all))
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connexion à {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { sender, host: addr.to_string() })
    }

    /// GETs `path`, reads the whole body; an answer other than 200 is an error.
    async fn get(&mut self, path: &str) -> anyhow::Result<usize> {
        self.sender.ready().await?;
        let request = hyper::Request::get(path).header(hyper::header::HOST, &self.host).body(Empty::<Bytes>::new())?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status == hyper::StatusCode::OK, "{path} : {status}");
        Ok(body.len())
    }
}
