//! The webhook alert sink (`[webhook] url`): each alert is POSTed as one JSON document.
//!
//! A delivery succeeds on a 2xx answer. Anything else (a timeout, a refused connection, a 5xx, also
//! a 4xx, which usually means a misconfigured receiver) is an error that the delivery layer logs,
//! counts and retries with backoff; an alert is never skipped. A receiver that stalls holds the
//! sink's queue, and a full queue pauses the daemon's input (back-pressure), so memory stays
//! bounded for the whole stall.

use crate::alert::Alert;
use crate::sink::AlertSink;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[webhook]`: POST every alert to an HTTP(S) endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Endpoint URL (`http://` or `https://`); unset = no webhook.
    pub url: Option<String>,
    /// Longest one request may take before it counts as failed and is retried.
    pub timeout: String,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            timeout: "10s".into(),
        }
    }
}

impl WebhookConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        humantime::parse_duration(&self.timeout)
            .map_err(|e| ("webhook.timeout".to_string(), e.to_string()))?;
        if let Some(url) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "webhook.url".into(),
                    format!("{url:?} must start with http:// or https://"),
                ));
            }
        }
        Ok(())
    }
}

/// POSTs alerts to one URL.
pub struct WebhookSink {
    url: String,
    timeout: Duration,
    /// Built on first use, on the delivery thread (the blocking client runs its own runtime).
    client: Option<reqwest::blocking::Client>,
    body: Vec<u8>,
}

impl WebhookSink {
    /// A sink for `cfg.url`; `None` when no URL is configured.
    pub fn from_config(cfg: &WebhookConfig) -> Option<WebhookSink> {
        let url = cfg.url.clone()?;
        Some(WebhookSink {
            url,
            timeout: humantime::parse_duration(&cfg.timeout).unwrap_or(Duration::from_secs(10)),
            client: None,
            body: Vec::with_capacity(2048),
        })
    }

    fn client(&mut self) -> anyhow::Result<&reqwest::blocking::Client> {
        if self.client.is_none() {
            let c = reqwest::blocking::Client::builder()
                .timeout(self.timeout)
                .build()
                .map_err(|e| anyhow::anyhow!("webhook client: {e}"))?;
            self.client = Some(c);
        }
        self.client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("webhook client missing"))
    }
}

impl AlertSink for WebhookSink {
    fn send(&mut self, alert: &Alert) -> anyhow::Result<()> {
        self.body.clear();
        serde_json::to_writer(&mut self.body, alert)?;
        let body = self.body.clone();
        let url = self.url.clone();
        let answer = self
            .client()?
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_err(|e| anyhow::anyhow!("webhook {url}: {e}"))?;
        let status = answer.status();
        if !status.is_success() {
            anyhow::bail!("webhook {url} answered {status}");
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http() {
        let cfg = WebhookConfig {
            url: Some("ftp://x".into()),
            ..WebhookConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().0, "webhook.url");
        assert!(WebhookSink::from_config(&WebhookConfig::default()).is_none());
    }
}
