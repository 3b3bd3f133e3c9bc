//! The listener and the edge every request crosses first. Owns: accepting connections (at most
//! `max_connections` at once), the TLS handshake under HTTPS (bounded like a request's headers),
//! HTTP/1.1 (and HTTP/2 when TLS negotiates it) with hyper's header-read timeout on a tokio timer,
//! closing idle connections, graceful shutdown, and the Host allowlist (421 otherwise, against DNS
//! rebinding). Leaves: routing and everything after it (mod.rs), reading certificates (tls.rs).

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::auth::Https;

/// The hardened edge: Host allowlist, timeouts of slow or idle clients, connection cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Host names (or IP addresses) requests may name in `Host`; `None`: the default (the listen
    /// address, `localhost`, and the loopback addresses when listening on one). `"*"` accepts any.
    pub allowed_hosts: Option<Vec<String>>,
    /// A client must send a request's headers within this (also bounds waiting between requests).
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves for this long, with no request in progress, is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// HTTPS instead of HTTP: the certificate and key files (`tls_cert`, `tls_key`).
    pub tls: Option<super::tls::TlsFiles>,
}

/// After a graceful close was asked, a connection that still has not ended (a client that does not
/// read its answer) is dropped after this.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` is cancelled, then lets the
/// requests in progress finish (each is bounded by the request time limit).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    edge: &EdgeConfig,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(edge.max_connections));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "connexion non acceptée");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, shutdown, edge, tls) = (router.clone(), shutdown.clone(), edge.clone(), tls.clone());
        tokio::spawn(async move {
            let activity = Arc::new(Activity { since: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) });
            let stream = Watched { inner: stream, activity: activity.clone() };
            match tls {
                None => serve_connection(stream, activity, remote, router, &edge, shutdown, false).await,
                // A client that opens a connection and never completes the handshake is bounded as
                // one that never sends its headers.
                Some(acceptor) => match tokio::time::timeout(edge.header_read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, activity, remote, router, &edge, shutdown, true).await,
                    Ok(Err(error)) => tracing::debug!(%error, %remote, "poignée de main TLS échouée"),
                    Err(_) => tracing::debug!(%remote, "poignée de main TLS trop lente"),
                },
            }
            drop(permit);
        });
    }
    // Every slot back means every connection has ended.
    let all = u32::try_from(edge.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(super::TIME_LIMIT + CLOSE_GRACE, slots.acquire_many(all)).await;
    Ok(())
}

/// When a connection last moved a byte, in milliseconds since it was accepted.
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
    /// Requests being answered.
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Counts a request as in progress while it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Serves one connection: HTTP/1.1, or under TLS whatever ALPN chose (HTTP/2 or HTTP/1.1).
async fn serve_connection<S>(
    stream: S,
    activity: Arc<Activity>,
    remote: SocketAddr,
    router: Router,
    edge: &EdgeConfig,
    shutdown: CancellationToken,
    https: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        if https {
            request.extensions_mut().insert(Https);
        }
        let busy = InFlight::new(&service_activity);
        let router = router.clone();
        async move {
            let response = tower::ServiceExt::oneshot(router, request.map(axum::body::Body::new)).await;
            drop(busy);
            let mut response = response.map_err(|never: Infallible| match never {})?;
            if https {
                secure_cookies(response.headers_mut());
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(edge.header_read_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(edge.idle_timeout));
    if !https {
        builder = builder.http1_only();
    }
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut closing: Option<Instant> = None;
    loop {
        let due = match closing {
            Some(asked) => asked + CLOSE_GRACE,
            None => activity.last() + edge.idle_timeout,
        };
        // Never in the past: a request in progress keeps a due time from firing in a loop.
        let check = due.max(Instant::now() + Duration::from_millis(250));
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, %remote, "connexion terminée");
                }
                return;
            }
            () = shutdown.cancelled(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = tokio::time::sleep_until(check) => {
                let idle = activity.in_flight.load(Ordering::Relaxed) == 0 && activity.last().elapsed() >= edge.idle_timeout;
                match closing {
                    Some(asked) if asked.elapsed() >= CLOSE_GRACE && activity.in_flight.load(Ordering::Relaxed) == 0 => return,
                    Some(_) => {}
                    None if idle => {
                        tracing::debug!(%remote, "connexion inactive fermée");
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    None => {}
                }
            }
        }
    }
}

/// Under HTTPS every cookie is `Secure` (session, form nonce, flash message), whichever part of
/// the application set it: the browser never sends them back in clear.
fn secure_cookies(headers: &mut axum::http::HeaderMap) {
    use axum::http::HeaderValue;
    use axum::http::header::SET_COOKIE;
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(SET_COOKIE);
    for cookie in cookies {
        let secured = match cookie.to_str() {
            Ok(text) if !text.split(';').any(|part| part.trim().eq_ignore_ascii_case("secure")) => {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
            }
            _ => cookie,
        };
        headers.append(SET_COOKIE, secured);
    }
}

/// A TCP stream that notes when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The host names requests may address.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
    /// Listening on every address: any IP literal is fine (DNS rebinding needs a name).
    any_ip: bool,
}

impl AllowedHosts {
    /// `allowed_hosts` as configured, else the listen address, `localhost`, the loopback
    /// addresses and the names the HTTPS certificate is for (`certified`; `*.example.sn` allows
    /// one more label in front of `example.sn`).
    pub fn new(configured: Option<&[String]>, listen: SocketAddr, certified: &[String]) -> Self {
        if let Some(names) = configured {
            return Self { any: names.iter().any(|n| n == "*"), names: names.to_vec(), any_ip: false };
        }
        let ip = listen.ip();
        let mut names = vec!["localhost".to_owned(), ip.to_string()];
        names.extend(certified.iter().map(|n| n.trim_end_matches('.').to_ascii_lowercase()));
        if ip.is_loopback() || ip.is_unspecified() {
            names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
        }
        Self { names, any: false, any_ip: ip.is_unspecified() }
    }

    /// True when `host` (a `Host` header value, with or without port) may be served.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let name = host_name(host);
        if name.is_empty() {
            return false;
        }
        let wildcard = |allowed: &String| {
            allowed
                .strip_prefix("*.")
                .is_some_and(|suffix| name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix))
        };
        (self.any_ip && name.parse::<IpAddr>().is_ok()) || self.names.contains(&name) || self.names.iter().any(wildcard)
    }
}

/// The name part of a `Host` value, lower case, without port, brackets or final dot.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Middleware: a request for a host not in the allowlist gets 421 and goes no further.
pub async fn check_host(State(hosts): State<Arc<AllowedHosts>>, request: Request, next: Next) -> Response {
    let host =
        request.headers().get(HOST).and_then(|v| v.to_str().ok()).map(str::to_owned).or_else(|| request.uri().host().map(str::to_owned));
    match host {
        Some(host) if hosts.allows(&host) => next.run(request).await,
        host => {
            let shown = super::extract::truncate(host.as_deref().unwrap_or(""), 100);
            tracing::debug!(host = %shown, "hôte refusé (allowed_hosts)");
            let message = format!("l'hôte « {shown} » n'est pas servi par ce serveur (voir allowed_hosts)");
            super::auth::error_response(StatusCode::MISDIRECTED_REQUEST, "misdirected", message, serde_json::Value::Null).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_allowlist_is_the_listen_address_and_localhost() {
        let local = AllowedHosts::new(None, "127.0.0.1:8080".parse().unwrap(), &[]);
        for host in ["127.0.0.1:8080", "localhost", "LOCALHOST:80", "[::1]:8080", "localhost."] {
            assert!(local.allows(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "", "10.0.0.1", "localhost.evil.example"] {
            assert!(!local.allows(host), "{host}");
        }
        let everywhere = AllowedHosts::new(None, "0.0.0.0:8080".parse().unwrap(), &[]);
        assert!(everywhere.allows("192.168.1.20:8080") && !everywhere.allows("rebind.example:8080"));
        let named =
            AllowedHosts::new(Some(&["ventes.example.sn".to_owned()]), "0.0.0.0:8080".parse().unwrap(), &["other.example.sn".to_owned()]);
        assert!(named.allows("Ventes.Example.SN:443") && !named.allows("localhost") && !named.allows("192.168.1.20"));
        assert!(!named.allows("other.example.sn"), "a configured list is the whole list");
        // The HTTPS certificate's names join the default one, wildcards for one more label.
        let certified = ["ventes.dakar.example.sn".to_owned(), "*.thies.example.sn".to_owned()];
        let https = AllowedHosts::new(None, "0.0.0.0:443".parse().unwrap(), &certified);
        for host in ["ventes.dakar.example.sn", "VENTES.DAKAR.EXAMPLE.SN:443", "ventes.thies.example.sn", "localhost"] {
            assert!(https.allows(host), "{host}");
        }
        for host in ["thies.example.sn", "a.b.thies.example.sn", ".thies.example.sn", "dakar.example.sn", "evil.example"] {
            assert!(!https.allows(host), "{host}");
        }
    }
}
