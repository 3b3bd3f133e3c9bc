//! A TCP proxy on loopback that delays every byte by a fixed time in each direction, as a wide
//! area link does (round trip = twice the delay), without limiting throughput: what is read is
//! stamped and written once its time has come, while reading goes on. Stands in for the internet
//! between sites in tests and benchmarks, and counts the round trips that cross it: each time a
//! client speaks again after its server answered (messages sent together, pipelined, are one).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running proxy; stops (and drops every connection) when dropped.
pub struct DelayProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// The link is cut: connections are dropped and new ones closed at once.
    cut: Arc<AtomicBool>,
    /// Bumped at each cut, so that links opened before it end.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    /// Round trips begun on every link so far.
    trips: Arc<AtomicU64>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`, `one_way`
    /// late in each direction.
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let trips = Arc::new(AtomicU64::new(0));
        let (is_cut, cuts, counted) = (cut.clone(), generation.clone(), trips.clone());
        let task = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_now = cuts.subscribe();
                let counted = counted.clone();
                links.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Whether the server spoke since the client last did: the client's next chunk
                    // then begins a round trip.
                    let answered = AtomicBool::new(true);
                    let asks = || {
                        if answered.swap(false, Ordering::SeqCst) {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    };
                    let answers = || answered.store(true, Ordering::SeqCst);
                    let link = async {
                        tokio::join!(pump(client_read, server_write, one_way, asks), pump(server_read, client_write, one_way, answers));
                    };
                    tokio::select! {
                        () = link => {}
                        _ = cut_now.changed() => {}
                    }
                });
            }
        });
        Ok(Self { addr, task, cut, generation, trips })
    }

    /// A proxy in front of the loopback PostgreSQL server a URL names
    /// (`postgres://…@127.0.0.1:PORT/db`), and the same URL through it.
    pub async fn in_front_of(url: &str, one_way: Duration) -> io::Result<(Self, String)> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("no loopback port and database in {url}"));
        let (head, tail) = url.rsplit_once(':').ok_or_else(invalid)?;
        let (port, database) = tail.split_once('/').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let proxy = Self::start(SocketAddr::from(([127, 0, 0, 1], port)), one_way).await?;
        let through = format!("{head}:{}/{database}", proxy.addr.port());
        Ok((proxy, through))
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Round trips begun through the proxy so far, on every connection: a client's messages sent
    /// after its server's last answer begin one (connecting and authenticating take several).
    pub fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::SeqCst)
    }

    /// Cuts the link (every open connection is dropped, new ones are closed at once) or restores it.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every link.
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; `read` is told of each chunk as it
/// arrives.
async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration, read: impl Fn()) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    read();
                    if sender.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the sender tells the writer the stream ended (once what is queued is out).
    };
    let writing = async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}
