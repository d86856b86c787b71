//! The operations HTTP server of `flowwarden run`: `/metrics` (Prometheus text format), `/healthz`
//! (200 while the process runs) and `/readyz` (200 when [`super::readiness`] is `Ok`, else 503 with
//! the reason). One small hyper server on its own thread and single-threaded tokio runtime, so a
//! scrape never competes with the pipeline's worker threads and a busy pipeline never blocks a scrape.

use super::{health, metrics, MetricsConfig};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::time::Duration;

/// A running server; dropping it stops the server.
pub struct TelemetryServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TelemetryServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TelemetryServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Installs the metrics recorder and, when `[metrics] enabled`, starts the server on `listen`.
/// Binding happens before this returns, so an address in use is reported at start-up.
pub fn start(cfg: &MetricsConfig) -> anyhow::Result<Option<TelemetryServer>> {
    let handle = metrics::install()?;
    if !cfg.enabled {
        return Ok(None);
    }
    let addr: SocketAddr = cfg
        .listen
        .parse()
        .map_err(|e| anyhow::anyhow!("metrics.listen {:?}: {e}", cfg.listen))?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (metrics.listen): {e}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("telemetry-http".into())
        .spawn(move || runtime.block_on(serve(listener, handle, stop_rx)))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(Some(TelemetryServer {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    }))
}

async fn serve(
    listener: std::net::TcpListener,
    handle: PrometheusHandle,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics server cannot start");
            return;
        }
    };
    // Histograms need periodic upkeep even when nobody scrapes.
    let mut upkeep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = upkeep.tick() => handle.run_upkeep(),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics server: accept failed");
                        continue;
                    }
                };
                let handle = handle.clone();
                let service = service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &handle)) }
                });
                tokio::spawn(async move {
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "metrics server: connection error");
                    }
                });
            }
        }
    }
}

/// Answers one request.
fn respond(req: &Request<Incoming>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let ready = health::readiness().is_ok();
            metrics::set_ready_gauge(ready);
            if let Some(age) = health::checkpoint_age() {
                metrics::set_checkpoint_age(age);
            }
            handle.run_upkeep();
            let mut r = Response::new(Full::new(Bytes::from(handle.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match health::readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn serves_metrics_health_and_not_found() {
        let server = start(&MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:0".into(),
        })
        .expect("start")
        .expect("enabled");
        let addr = server.local_addr();
        metrics::record_batch("server-test", 7, 0, 0);
        let m = get(addr, "/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(
            m.contains("flowwarden_records_total{source=\"server-test\"} 7"),
            "{m}"
        );
        assert!(m.contains("flowwarden_build_info"), "{m}");
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        let r = get(addr, "/readyz");
        assert!(
            r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.1 503"),
            "{r}"
        );
        drop(server);
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "server should stop on drop"
        );
    }
    #[test]
    fn the_default_listen_address_is_loopback_only() {
        let default = MetricsConfig::default();
        let addr: SocketAddr = default.listen.parse().expect("default parses");
        assert!(addr.ip().is_loopback(), "{addr}");
        // The default host with a free port: the socket really is bound to loopback only.
        let server = start(&MetricsConfig {
            enabled: true,
            listen: SocketAddr::new(addr.ip(), 0).to_string(),
        })
        .expect("start")
        .expect("enabled");
        assert!(server.local_addr().ip().is_loopback());
        let port = server.local_addr().port();
        // Not reachable on this host's other addresses (when it has one besides loopback).
        let outside = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|u| u.connect("192.0.2.1:9").map(|_| u))
            .and_then(|u| u.local_addr())
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
        if let Some(ip) = outside {
            assert!(
                std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(ip, port),
                    Duration::from_secs(2)
                )
                .is_err(),
                "the metrics port answers on {ip}"
            );
        }
    }
}
