//! The Goldmane HTTP push receiver (`[source] kind = "goldmane-http"`): Calico open source 3.30+
//! aggregates flows in Goldmane, whose emitter POSTs them (`PUSH_URL`) as ndjson to
//! `POST /api/v1/flows/bulk`.
//!
//! This module owns the HTTP server (hyper on its own tokio runtime, optional TLS with client
//! certificates via rustls, optional bearer token), the de-duplication of re-sent buckets, and the
//! bounded queue between the server and the synchronous [`LineSource`] side that the daemon polls.
//! It must not decode records for the pipeline: it forwards lines, and the pipeline's decoder
//! dead-letters bad ones. It validates lines only to name the first bad one in its 400 reply.
//!
//! Acknowledgement: a request is answered 200 only after every line it contributed went through the
//! pipeline and the alerts of that batch were delivered ([`LineSource::batch_done`]), because
//! Goldmane forgets a bucket once it gets a 200. A full queue answers 503 (Goldmane retries with
//! backoff); nothing of a refused request is remembered, so its retry is not mistaken for a
//! duplicate.

use crate::flow::{Decoder, Format};
use crate::secret::{Secret, SecretRef};
use crate::source::{LineBatch, LineSource, Poll, SourceCheckpoint};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The one path Goldmane's emitter posts to.
pub const BULK_PATH: &str = "/api/v1/flows/bulk";

/// Seconds a back-pressured client is asked to wait (`Retry-After`).
const RETRY_AFTER_S: &str = "1";

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight requests to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// `[goldmane_http]`: the push receiver's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldmaneHttpConfig {
    /// Address and port to listen on (`127.0.0.1:8088`; `0.0.0.0:8088` in a pod).
    pub listen: String,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests queued for the pipeline at most; when full, new requests get 503 + `Retry-After`.
    pub queue_batches: usize,
    /// Server certificate chain (PEM). With `tls_key`, the receiver speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM): when set, clients must present a certificate signed by it (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` (401 otherwise). Printed as `***`.
    pub bearer_token: Option<Secret>,
    /// Read the bearer token from this file instead (surrounding whitespace ignored).
    pub bearer_token_file: Option<PathBuf>,
    /// Read the bearer token from this environment variable instead.
    pub bearer_token_env: Option<String>,
    /// Listen on a non-loopback address with neither TLS nor a bearer token. Off: such a config
    /// is refused (anyone who can reach the port could feed flows in and hide an attack).
    pub allow_insecure_listen: bool,
    /// Recent buckets remembered to drop re-sent ones; 0 turns de-duplication off.
    pub dedup_capacity: usize,
    /// A remembered bucket is forgotten this long after it arrived.
    pub dedup_ttl: String,
}

impl Default for GoldmaneHttpConfig {
    fn default() -> Self {
        GoldmaneHttpConfig {
            listen: "127.0.0.1:8088".into(),
            max_body_bytes: 16 << 20,
            queue_batches: 16,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            bearer_token: None,
            bearer_token_file: None,
            bearer_token_env: None,
            allow_insecure_listen: false,
            dedup_capacity: 1_000_000,
            dedup_ttl: "1h".into(),
        }
    }
}

impl GoldmaneHttpConfig {
    /// The bearer token's three settings (`bearer_token`, `_file`, `_env`).
    pub fn bearer_token_ref(&self) -> SecretRef<'_> {
        SecretRef::new(
            "goldmane_http.bearer_token",
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_ref(),
            self.bearer_token_env.as_ref(),
        )
    }

    /// Checks values that types alone cannot; errors are `(key, message)` with the full key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((format!("goldmane_http.{k}"), m.to_string()));
        let Ok(listen) = self.listen.parse::<SocketAddr>() else {
            return err(
                "listen",
                "must be an address and port such as \"0.0.0.0:8088\"",
            );
        };
        if self.max_body_bytes < 1024 {
            return err("max_body_bytes", "must be at least 1024");
        }
        if self.max_body_bytes > u32::MAX as usize / 2 {
            return err("max_body_bytes", "must be below 2 GiB");
        }
        if self.queue_batches == 0 {
            return err("queue_batches", "must be at least 1");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return err("tls_cert", "tls_cert and tls_key must be set together");
        }
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            return err(
                "client_ca",
                "client certificates need TLS: set tls_cert and tls_key",
            );
        }
        let token = self.bearer_token_ref();
        token.validate().map_err(|e| (e.key, e.message))?;
        if !listen.ip().is_loopback()
            && self.tls_cert.is_none()
            && !token.is_set()
            && !self.allow_insecure_listen
        {
            return Err((
                "goldmane_http.listen".into(),
                format!(
                    "{listen} is not a loopback address, and the receiver has neither TLS \
                     (tls_cert, tls_key, client_ca) nor a bearer token: anyone reaching the port \
                     could push flows. Configure one, or set allow_insecure_listen = true"
                ),
            ));
        }
        if humantime::parse_duration(&self.dedup_ttl).is_err() {
            return err("dedup_ttl", "must be a duration such as \"1h\"");
        }
        Ok(())
    }
}

/// Why the receiver could not start.
#[derive(Debug, Error)]
pub enum GoldmaneHttpError {
    /// A setting is invalid.
    #[error("config key `{0}`: {1}")]
    Config(String, String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Listen {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A certificate, key or token file could not be read or used.
    #[error("{what} {path}: {message}")]
    File {
        /// Which setting.
        what: &'static str,
        /// Path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificates.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The runtime could not be created.
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
}

/// Counters of one receiver (also exported as `flowwarden_goldmane_*` metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GoldmaneHttpStats {
    /// Requests to the bulk path that were handed to the pipeline.
    pub accepted_requests: u64,
    /// Lines handed to the pipeline (valid and bad ones).
    pub accepted_lines: u64,
    /// Lines dropped because their bucket was already received.
    pub duplicates: u64,
    /// Requests refused with 503 because the queue was full.
    pub backpressured: u64,
    /// Requests answered 400 because a line was malformed.
    pub malformed_requests: u64,
}

#[derive(Default)]
struct Counters {
    accepted_requests: AtomicU64,
    accepted_lines: AtomicU64,
    duplicates: AtomicU64,
    backpressured: AtomicU64,
    malformed_requests: AtomicU64,
}

/// Remembers the keys of recently received buckets: a ring of the last `capacity` keys, each
/// forgotten `ttl` after it arrived. Keys are 64-bit hashes (a collision among a million keys has a
/// probability of about 3e-8, and costs one dropped record).
#[derive(Debug)]
pub struct RecentBuckets {
    capacity: usize,
    ttl_s: u64,
    epoch: Instant,
    seen: FxHashSet<u64>,
    /// Keys in arrival order with their arrival time (seconds since `epoch`).
    order: VecDeque<(u64, u64)>,
}

impl RecentBuckets {
    /// Remembers at most `capacity` keys for at most `ttl`; capacity 0 remembers nothing.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        RecentBuckets {
            capacity,
            ttl_s: ttl.as_secs().max(1),
            epoch: Instant::now(),
            seen: FxHashSet::default(),
            order: VecDeque::new(),
        }
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether `key` arrived recently.
    pub fn contains(&mut self, key: u64) -> bool {
        let now = self.now_s();
        self.contains_at(key, now)
    }

    /// Remembers `key` (which must not be remembered already).
    pub fn insert(&mut self, key: u64) {
        let now = self.now_s();
        self.insert_at(key, now);
    }

    fn now_s(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn contains_at(&mut self, key: u64, now_s: u64) -> bool {
        self.expire(now_s);
        self.seen.contains(&key)
    }

    fn insert_at(&mut self, key: u64, now_s: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.seen.insert(key) {
            self.order.push_back((key, now_s));
        }
        self.expire(now_s);
    }

    fn expire(&mut self, now_s: u64) {
        while let Some(&(key, at)) = self.order.front() {
            if self.order.len() > self.capacity || now_s.saturating_sub(at) >= self.ttl_s {
                self.order.pop_front();
                self.seen.remove(&key);
            } else {
                break;
            }
        }
    }
}

/// One line of a request body that goes to the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct BodyLine {
    /// Offset of its first byte in the body.
    pub start: usize,
    /// Offset one past its last byte (a `\r` before the newline excluded).
    pub end: usize,
    /// 1-based line number in the body.
    pub line: u64,
}

/// A request's accepted lines on their way to the pipeline.
struct PushedBody {
    source: Arc<str>,
    body: Bytes,
    lines: Vec<BodyLine>,
    /// Fired once every line went through the pipeline; dropped (never fired) on shutdown.
    ack: tokio::sync::oneshot::Sender<()>,
}

/// What inspecting a body found.
#[derive(Debug, Default)]
pub struct BodyReport {
    /// Non-blank lines with their bucket key (None: not a Goldmane flow, or bad).
    pub lines: Vec<(BodyLine, Option<u64>)>,
    /// First bad line: number and reason.
    pub first_bad: Option<(u64, String)>,
    /// Lines the decoder rejected.
    pub bad_lines: u64,
}

/// Splits an ndjson body into lines, validates each with the pipeline's decoder and computes the
/// bucket key of each Goldmane flow. Blank lines are skipped (a trailing newline is harmless).
/// Pure (no server state), so the `http_body` fuzz target drives it directly.
pub fn inspect_body(body: &[u8], max_line: usize) -> BodyReport {
    let mut decoder = Decoder::new(max_line);
    let mut report = BodyReport::default();
    let mut start = 0usize;
    let mut line_no = 0u64;
    while start < body.len() {
        let nl = body[start..].iter().position(|&b| b == b'\n');
        let end = nl.map_or(body.len(), |i| start + i);
        line_no += 1;
        let mut content_end = end;
        if content_end > start && body[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        let text = &body[start..content_end];
        if !text.iter().all(u8::is_ascii_whitespace) {
            let line = BodyLine {
                start,
                end: content_end,
                line: line_no,
            };
            let key = match decoder.decode(text) {
                Ok(rec) if rec.format == Format::Goldmane => bucket_key(text),
                Ok(_) => None,
                Err(e) => {
                    report.bad_lines += 1;
                    if report.first_bad.is_none() {
                        report.first_bad = Some((line_no, e.to_string()));
                    }
                    None
                }
            };
            report.lines.push((line, key));
        }
        start = end + 1;
    }
    report
}

/// The bucket key of a Goldmane flow: a hash of its `Key` (every field, object keys in sorted
/// order so field order does not matter) and its `start_time` and `end_time`.
fn bucket_key(line: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct KeyAndTimes {
        #[serde(rename = "Key")]
        key: Option<serde_json::Value>,
        start_time: Option<i64>,
        end_time: Option<i64>,
    }
    let parsed: KeyAndTimes = serde_json::from_slice(line).ok()?;
    let key = parsed.key?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    hash_json(&key, &mut h);
    h.update(&parsed.start_time.unwrap_or(0).to_le_bytes());
    h.update(&parsed.end_time.unwrap_or(0).to_le_bytes());
    Some(h.digest())
}

/// Feeds a JSON value to the hasher unambiguously (type tags, lengths, sorted object keys).
fn hash_json(v: &serde_json::Value, h: &mut xxhash_rust::xxh3::Xxh3) {
    use serde_json::Value;
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            let s = n.to_string();
            h.update(b"#");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update(&(a.len() as u64).to_le_bytes());
            for x in a {
                hash_json(x, h);
            }
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            h.update(&(keys.len() as u64).to_le_bytes());
            for k in keys {
                h.update(&(k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                if let Some(x) = m.get(k) {
                    hash_json(x, h);
                }
            }
        }
    }
}

/// What the request handlers share.
struct Shared {
    max_body_bytes: usize,
    max_line: usize,
    bearer_token: Option<Secret>,
    queue: tokio::sync::mpsc::Sender<PushedBody>,
    recent: Mutex<RecentBuckets>,
    counters: Arc<Counters>,
}

/// Compares without an early exit, so the response time does not reveal a token prefix.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Why a request is refused before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 404, 405, 401 or 413.
    pub status: StatusCode,
    /// The plain-text answer.
    pub text: String,
}

/// Decides what can be decided from a request's head alone: the path, the method, the bearer
/// token (when one is expected) and a declared `Content-Length` above `max_body_bytes`. Pure, so
/// the `http_body` fuzz target drives it directly.
pub fn check_head(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    expected_token: Option<&Secret>,
    max_body_bytes: usize,
) -> Result<(), Refusal> {
    let refuse = |status, text: String| Err(Refusal { status, text });
    if path != BULK_PATH {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("not found; Goldmane posts to {BULK_PATH}"),
        );
    }
    if method != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is allowed here".into(),
        );
    }
    if let Some(expected) = expected_token {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !given.is_some_and(|g| token_matches(g, expected.expose().as_bytes())) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            );
        }
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes as u64) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large_text(max_body_bytes),
        );
    }
    Ok(())
}

fn too_large_text(max_body_bytes: usize) -> String {
    format!("body larger than max_body_bytes = {max_body_bytes}")
}

fn refusal_reply(r: Refusal) -> Response<Full<Bytes>> {
    let mut resp = reply(r.status, r.text);
    if r.status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
    }
    if r.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

fn reply(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    let mut text = text.into();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let code = status.as_u16().to_string();
    metrics::counter!("flowwarden_goldmane_requests_total", "code" => code).increment(1);
    resp
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Err(refusal) = check_head(
        req.method(),
        req.uri().path(),
        req.headers(),
        shared.bearer_token.as_ref(),
        shared.max_body_bytes,
    ) {
        return Ok(refusal_reply(refusal));
    }
    let too_large = || {
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large_text(shared.max_body_bytes),
        )
    };
    let body = match Limited::new(req.into_body(), shared.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Ok(too_large()),
        Err(e) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            ))
        }
    };
    // Validation parses every line: keep that CPU work off the I/O threads.
    let max_line = shared.max_line;
    let inspected = {
        let body = body.clone();
        tokio::task::spawn_blocking(move || inspect_body(&body, max_line)).await
    };
    let report = match inspected {
        Ok(r) => r,
        Err(e) => {
            return Ok(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("validation failed: {e}"),
            ))
        }
    };
    let bad_reply = |report: &BodyReport| {
        report.first_bad.as_ref().map(|(line, reason)| {
            shared.counters.malformed_requests.fetch_add(1, Ordering::Relaxed);
            reply(
                StatusCode::BAD_REQUEST,
                format!(
                    "line {line}: {reason} ({} bad line(s) dead-lettered; the valid lines were accepted)",
                    report.bad_lines
                ),
            )
        })
    };
    let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
    let (lines_sent, duplicates) = {
        let mut recent = match shared.recent.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut lines = Vec::with_capacity(report.lines.len());
        let mut new_keys: FxHashSet<u64> = FxHashSet::default();
        let mut duplicates = 0u64;
        for (line, key) in &report.lines {
            match key {
                Some(k) if recent.contains(*k) || !new_keys.insert(*k) => duplicates += 1,
                _ => lines.push(*line),
            }
        }
        let n = lines.len() as u64;
        if n > 0 {
            let pushed = PushedBody {
                source: Arc::clone(&peer),
                body,
                lines,
                ack: ack_tx,
            };
            match shared.queue.try_send(pushed) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    shared
                        .counters
                        .backpressured
                        .fetch_add(1, Ordering::Relaxed);
                    let mut resp = reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the pipeline is busy (queue full); retry later",
                    );
                    resp.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
                    return Ok(resp);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
                }
            }
            // Remember the buckets only once they are queued: a refused request's retry is new.
            for k in new_keys {
                recent.insert(k);
            }
        }
        (n, duplicates)
    };
    if duplicates > 0 {
        shared
            .counters
            .duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        metrics::counter!("flowwarden_goldmane_duplicates_total").increment(duplicates);
    }
    if lines_sent == 0 {
        return Ok(bad_reply(&report).unwrap_or_else(|| reply(StatusCode::OK, "ok")));
    }
    shared
        .counters
        .accepted_requests
        .fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .accepted_lines
        .fetch_add(lines_sent, Ordering::Relaxed);
    metrics::counter!("flowwarden_goldmane_records_total").increment(lines_sent);
    match ack_rx.await {
        Ok(()) => Ok(bad_reply(&report).unwrap_or_else(|| reply(StatusCode::OK, "ok"))),
        Err(_) => {
            let mut resp = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down before the records were processed",
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
            Ok(resp)
        }
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, GoldmaneHttpError> {
    std::fs::read(path).map_err(|e| GoldmaneHttpError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Builds the rustls server config: the server certificate, and a client verifier when `client_ca`.
fn tls_config(
    cfg: &GoldmaneHttpConfig,
) -> Result<Option<Arc<rustls::ServerConfig>>, GoldmaneHttpError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_path), Some(key_path)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let bad_pem = |what: &'static str, path: &Path, e: String| GoldmaneHttpError::File {
        what,
        path: path.to_path_buf(),
        message: e,
    };
    let cert_pem = read_file("tls_cert", cert_path)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem("tls_cert", cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad_pem(
            "tls_cert",
            cert_path,
            "no PEM certificate found".into(),
        ));
    }
    let key_pem = read_file("tls_key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad_pem(
            "tls_key",
            key_path,
            format!("no usable PEM private key: {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| GoldmaneHttpError::Tls(e.to_string()))?;
    let builder = match &cfg.client_ca {
        Some(ca_path) => {
            let ca_pem = read_file("client_ca", ca_path)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                let cert = cert.map_err(|e| bad_pem("client_ca", ca_path, e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| bad_pem("client_ca", ca_path, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad_pem(
                    "client_ca",
                    ca_path,
                    "no PEM certificate found".into(),
                ));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| GoldmaneHttpError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| GoldmaneHttpError::Tls(format!("{}: {e}", cert_path.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn bearer_token(cfg: &GoldmaneHttpConfig) -> Result<Option<Secret>, GoldmaneHttpError> {
    cfg.bearer_token_ref()
        .resolve()
        .map_err(|e| GoldmaneHttpError::Config(e.key, e.message))
}

/// Serves one accepted connection (after the TLS handshake, if any) until it closes.
async fn serve_connection<IO>(
    io: IO,
    shared: Arc<Shared>,
    peer: Arc<str>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, Arc::clone(&shared), Arc::clone(&peer)));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "goldmane-http connection ended with an error");
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually out of file descriptors: wait instead of spinning.
                tracing::warn!(error = %e, "goldmane-http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer: Arc<str> = Arc::from(format!("goldmane-http:{peer_addr}"));
        let shared = Arc::clone(&shared);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(tcp, shared, peer, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, shared, peer, watcher).await,
                        Ok(Err(e)) => {
                            tracing::info!(peer = %peer, error = %e, "goldmane-http TLS handshake refused")
                        }
                        Err(_) => {
                            tracing::info!(peer = %peer, "goldmane-http TLS handshake timed out")
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("goldmane-http: some connections were still open at shutdown");
    }
}

/// The receiving end of the queue, as a [`LineSource`] the daemon polls.
pub struct GoldmaneHttpSource {
    /// A tokio channel because dropping its receiver drops the queued bodies (so their requests
    /// are answered 503 at shutdown) and refuses later sends.
    queue: Option<tokio::sync::mpsc::Receiver<PushedBody>>,
    /// The body being split into batches, and the index of its next line.
    current: Option<(PushedBody, usize)>,
    /// Acknowledgements of bodies whose last line is in the batch being processed.
    completed: Vec<tokio::sync::oneshot::Sender<()>>,
    counters: Arc<Counters>,
    local_addr: SocketAddr,
    tls: bool,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for GoldmaneHttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoldmaneHttpSource")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl GoldmaneHttpSource {
    /// Validates `cfg`, binds the listen address and starts the server on its own thread.
    /// `max_line_bytes` is `[input] max_line_bytes` (lines longer than that are bad lines).
    pub fn start(
        cfg: &GoldmaneHttpConfig,
        max_line_bytes: usize,
    ) -> Result<Self, GoldmaneHttpError> {
        cfg.validate()
            .map_err(|(k, m)| GoldmaneHttpError::Config(k, m))?;
        let tls = tls_config(cfg)?;
        let bearer_token = bearer_token(cfg)?;
        let ttl = humantime::parse_duration(&cfg.dedup_ttl).map_err(|e| {
            GoldmaneHttpError::Config("goldmane_http.dedup_ttl".into(), e.to_string())
        })?;
        let listen_err = |source| GoldmaneHttpError::Listen {
            addr: cfg.listen.clone(),
            source,
        };
        let std_listener = std::net::TcpListener::bind(&cfg.listen).map_err(listen_err)?;
        std_listener.set_nonblocking(true).map_err(listen_err)?;
        let local_addr = std_listener.local_addr().map_err(listen_err)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(2)
            .thread_name("goldmane-http")
            .enable_all()
            .build()
            .map_err(GoldmaneHttpError::Runtime)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).map_err(listen_err)?
        };
        let (queue_tx, queue_rx) = tokio::sync::mpsc::channel(cfg.queue_batches);
        let counters = Arc::new(Counters::default());
        let shared_has_token = bearer_token.is_some();
        let shared = Arc::new(Shared {
            max_body_bytes: cfg.max_body_bytes,
            max_line: max_line_bytes,
            bearer_token,
            queue: queue_tx,
            recent: Mutex::new(RecentBuckets::new(cfg.dedup_capacity, ttl)),
            counters: Arc::clone(&counters),
        });
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let server = std::thread::Builder::new()
            .name("goldmane-http".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, acceptor, shared, shutdown_rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(GoldmaneHttpError::Runtime)?;
        tracing::info!(
            addr = %local_addr,
            tls = tls.is_some(),
            client_certificates = cfg.client_ca.is_some(),
            bearer_token = shared_has_token,
            "goldmane-http listening on {local_addr}{BULK_PATH}"
        );
        if !local_addr.ip().is_loopback() && cfg.client_ca.is_none() && !shared_has_token {
            tracing::warn!(
                addr = %local_addr,
                "goldmane-http accepts pushes from any client that reaches it: set client_ca \
                 (mutual TLS) or a bearer token to authenticate them"
            );
        }
        Ok(GoldmaneHttpSource {
            queue: Some(queue_rx),
            current: None,
            completed: Vec::new(),
            counters,
            local_addr,
            tls: tls.is_some(),
            shutdown: Some(shutdown_tx),
            server: Some(server),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> GoldmaneHttpStats {
        let c = &self.counters;
        GoldmaneHttpStats {
            accepted_requests: c.accepted_requests.load(Ordering::Relaxed),
            accepted_lines: c.accepted_lines.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            backpressured: c.backpressured.load(Ordering::Relaxed),
            malformed_requests: c.malformed_requests.load(Ordering::Relaxed),
        }
    }
}

impl LineSource for GoldmaneHttpSource {
    fn poll_batch(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
        max_bytes: usize,
    ) -> std::io::Result<Poll> {
        let before = batch.len();
        'bodies: loop {
            if self.current.is_none() {
                match self.queue.as_mut().map(|q| q.try_recv()) {
                    Some(Ok(body)) => self.current = Some((body, 0)),
                    _ => break,
                }
            }
            let Some((body, next)) = self.current.as_mut() else {
                break;
            };
            while let Some(line) = body.lines.get(*next) {
                let len = line.end - line.start;
                let full = batch.len() >= max_lines
                    || (!batch.is_empty() && batch.data.len() + len > max_bytes);
                if full {
                    break 'bodies;
                }
                batch.push_line(
                    &body.source,
                    &body.body[line.start..line.end],
                    line.line,
                    line.start as u64,
                );
                *next += 1;
            }
            if let Some((body, _)) = self.current.take() {
                self.completed.push(body.ack);
            }
        }
        Ok(if batch.len() > before {
            Poll::Data
        } else {
            Poll::Idle
        })
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        // Goldmane keeps its own progress; there is nothing to resume here.
        SourceCheckpoint::default()
    }

    fn batch_done(&mut self) {
        for ack in self.completed.drain(..) {
            // The client may have gone away; its records were processed all the same.
            let _ = ack.send(());
        }
    }
}

impl Drop for GoldmaneHttpSource {
    fn drop(&mut self) {
        // Drop the queued bodies first: their handlers answer 503 so Goldmane re-sends them later.
        self.completed.clear();
        self.current = None;
        self.queue = None;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str, port: u16, start: i64) -> String {
        format!(
            r#"{{"Key":{{"source_name":"{src}","source_namespace":"app","source_type":1,"dest_name":"db-1-*","dest_namespace":"data","dest_type":1,"dest_port":{port},"proto":"tcp","reporter":1,"action":2}},"start_time":{start},"end_time":{},"packets_out":3,"bytes_out":180,"num_connections_started":1}}"#,
            start + 15
        )
    }

    #[test]
    fn recent_buckets_forget_by_capacity_and_age() {
        let mut r = RecentBuckets::new(3, Duration::from_secs(60));
        for k in 1..=3 {
            r.insert_at(k, 0);
        }
        assert!(r.contains_at(1, 0));
        r.insert_at(4, 1);
        assert!(
            !r.contains_at(1, 1),
            "the oldest key is dropped past capacity"
        );
        assert!(r.contains_at(2, 1) && r.contains_at(4, 1));
        assert!(
            r.contains_at(4, 60),
            "key 4 arrived at 1s, still within 60s"
        );
        assert!(!r.contains_at(2, 60), "key 2 arrived at 0s, expired at 60s");
        assert!(!r.contains_at(4, 61));
        assert!(r.is_empty());
        let mut off = RecentBuckets::new(0, Duration::from_secs(60));
        off.insert_at(1, 0);
        assert!(!off.contains_at(1, 0));
    }

    #[test]
    fn bucket_key_ignores_field_order_but_not_values() {
        let a = br#"{"Key":{"source_name":"a","dest_port":80,"policies":{"enforced_policies":[{"name":"p","kind":2}]}},"start_time":10,"end_time":25,"bytes_out":5}"#;
        let b = br#"{"bytes_out":999,"end_time":25,"start_time":10,"Key":{"policies":{"enforced_policies":[{"kind":2,"name":"p"}]},"dest_port":80,"source_name":"a"}}"#;
        let c = br#"{"Key":{"source_name":"a","dest_port":81,"policies":{"enforced_policies":[{"name":"p","kind":2}]}},"start_time":10,"end_time":25}"#;
        let d = br#"{"Key":{"source_name":"a","dest_port":80,"policies":{"enforced_policies":[{"name":"p","kind":2}]}},"start_time":25,"end_time":40}"#;
        let ka = bucket_key(a).expect("goldmane flow has a key");
        assert_eq!(
            Some(ka),
            bucket_key(b),
            "counters and field order are not part of the key"
        );
        assert_ne!(Some(ka), bucket_key(c));
        assert_ne!(Some(ka), bucket_key(d));
        assert_eq!(bucket_key(br#"{"start_time":1}"#), None);
    }

    #[test]
    fn inspect_body_numbers_lines_and_names_the_first_bad_one() {
        let body = format!(
            "{}\r\n\n{{not json\n{}\n{{\"Key\":{{}}}}\n",
            flow("a-*", 1, 0),
            flow("a-*", 2, 0)
        );
        let r = inspect_body(body.as_bytes(), 1 << 20);
        let numbers: Vec<u64> = r.lines.iter().map(|(l, _)| l.line).collect();
        assert_eq!(
            numbers,
            vec![1, 3, 4, 5],
            "blank line 2 skipped, the rest numbered as in the body"
        );
        assert_eq!(r.bad_lines, 2, "line 3 is not JSON, line 5 has no time");
        let (line, reason) = r.first_bad.expect("a bad line");
        assert_eq!(line, 3);
        assert!(reason.contains("invalid record"), "{reason}");
        assert!(r.lines[0].1.is_some() && r.lines[2].1.is_some());
        assert!(r.lines[1].1.is_none() && r.lines[3].1.is_none());
        let (first, _) = r.lines[0];
        assert_eq!(
            &body.as_bytes()[first.start..first.end],
            flow("a-*", 1, 0).as_bytes(),
            "\\r stripped"
        );
    }

    #[test]
    fn config_validation_names_the_key() {
        let ok = GoldmaneHttpConfig::default();
        assert!(ok.validate().is_ok());
        let bad = GoldmaneHttpConfig {
            listen: "localhost".into(),
            ..ok.clone()
        };
        assert_eq!(bad.validate().unwrap_err().0, "goldmane_http.listen");
        let bad = GoldmaneHttpConfig {
            tls_cert: Some("c.pem".into()),
            ..ok.clone()
        };
        assert_eq!(bad.validate().unwrap_err().0, "goldmane_http.tls_cert");
        let bad = GoldmaneHttpConfig {
            client_ca: Some("ca.pem".into()),
            ..ok.clone()
        };
        assert_eq!(bad.validate().unwrap_err().0, "goldmane_http.client_ca");
        let bad = GoldmaneHttpConfig {
            queue_batches: 0,
            ..ok
        };
        assert_eq!(bad.validate().unwrap_err().0, "goldmane_http.queue_batches");
    }

    #[test]
    fn the_token_is_redacted_when_printed() {
        let cfg = GoldmaneHttpConfig {
            bearer_token: Some("s3cret".into()),
            ..Default::default()
        };
        let text = toml::to_string(&cfg).expect("serializes");
        assert!(!text.contains("s3cret") && text.contains("***"), "{text}");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn a_non_loopback_listen_needs_tls_a_token_or_an_explicit_opt_in() {
        let open = GoldmaneHttpConfig {
            listen: "0.0.0.0:8088".into(),
            ..Default::default()
        };
        let (key, message) = open.validate().unwrap_err();
        assert_eq!(key, "goldmane_http.listen");
        assert!(message.contains("allow_insecure_listen"), "{message}");
        let v6 = GoldmaneHttpConfig {
            listen: "[::]:8088".into(),
            ..Default::default()
        };
        assert_eq!(v6.validate().unwrap_err().0, "goldmane_http.listen");
        for ok in [
            GoldmaneHttpConfig {
                tls_cert: Some("c.pem".into()),
                tls_key: Some("k.pem".into()),
                ..open.clone()
            },
            GoldmaneHttpConfig {
                bearer_token_env: Some("GOLDMANE_TOKEN".into()),
                ..open.clone()
            },
            GoldmaneHttpConfig {
                allow_insecure_listen: true,
                ..open.clone()
            },
            GoldmaneHttpConfig {
                listen: "[::1]:8088".into(),
                ..Default::default()
            },
        ] {
            assert!(ok.validate().is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn check_head_decides_path_method_token_and_declared_length() {
        let mut headers = HeaderMap::new();
        let token = Secret::new("t0ken");
        let post = Method::POST;
        let check = |m: &Method, p: &str, h: &HeaderMap, t: Option<&Secret>| {
            check_head(m, p, h, t, 1024).map_err(|r| r.status.as_u16())
        };
        assert_eq!(check(&post, "/x", &headers, None), Err(404));
        assert_eq!(check(&Method::GET, BULK_PATH, &headers, None), Err(405));
        assert_eq!(check(&post, BULK_PATH, &headers, None), Ok(()));
        assert_eq!(check(&post, BULK_PATH, &headers, Some(&token)), Err(401));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t0ke"));
        assert_eq!(check(&post, BULK_PATH, &headers, Some(&token)), Err(401));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t0ken"));
        assert_eq!(check(&post, BULK_PATH, &headers, Some(&token)), Ok(()));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("1025"));
        assert_eq!(check(&post, BULK_PATH, &headers, Some(&token)), Err(413));
    }
}
