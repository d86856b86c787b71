//! Secrets in the configuration (bearer tokens, SASL and key passwords): the [`Secret`] type, whose
//! `Debug`, `Display` and `Serialize` print `***` so neither `check-config` nor a log line can show
//! the value, and [`SecretRef`], the rule that a secret `x` is given by exactly one of the keys `x`
//! (inline), `x_file` (read from a file, surrounding whitespace ignored) or `x_env` (the name of an
//! environment variable).
//!
//! The value is only reachable through [`Secret::expose`], so every place that hands it on (an HTTP
//! token comparison, a librdkafka property) is explicit and greppable.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What a secret prints as.
pub const REDACTED: &str = "***";

/// A secret string. Printing it in any way shows [`REDACTED`]; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: only for handing it to what needs it, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// A secret that could not be read, naming the config key; the message never holds the value.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("config key `{key}`: {message}")]
pub struct SecretError {
    /// Dotted key (`kafka.sasl_password_file`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The three ways one secret can be configured, with the dotted name of its inline key
/// (`kafka.sasl_password`; the others are that plus `_file` and `_env`).
#[derive(Debug, Clone, Copy)]
pub struct SecretRef<'a> {
    /// Dotted key of the inline value.
    pub key: &'a str,
    /// `x = "..."`.
    pub inline: Option<&'a Secret>,
    /// `x_file = "/path"`.
    pub file: Option<&'a Path>,
    /// `x_env = "VAR"`.
    pub env: Option<&'a str>,
}

impl<'a> SecretRef<'a> {
    /// Groups the three settings of the secret `key`.
    pub fn new(
        key: &'a str,
        inline: Option<&'a Secret>,
        file: Option<&'a PathBuf>,
        env: Option<&'a String>,
    ) -> Self {
        SecretRef {
            key,
            inline,
            file: file.map(PathBuf::as_path),
            env: env.map(String::as_str),
        }
    }

    fn err(&self, suffix: &str, message: impl Into<String>) -> SecretError {
        SecretError {
            key: format!("{}{suffix}", self.key),
            message: message.into(),
        }
    }

    /// Whether any of the three is set.
    pub fn is_set(&self) -> bool {
        self.inline.is_some() || self.file.is_some() || self.env.is_some()
    }

    /// Checks what needs no I/O: at most one of the three, nothing empty.
    pub fn validate(&self) -> Result<(), SecretError> {
        let given = [
            self.inline.is_some(),
            self.file.is_some(),
            self.env.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            let k = self.key.rsplit('.').next().unwrap_or(self.key);
            return Err(self.err("", format!("set only one of {k}, {k}_file and {k}_env")));
        }
        if matches!(self.inline, Some(s) if s.expose().trim().is_empty()) {
            return Err(self.err("", "must not be empty"));
        }
        if matches!(self.env, Some(v) if v.trim().is_empty()) {
            return Err(self.err("_env", "must name an environment variable"));
        }
        Ok(())
    }

    /// The value: inline, or read from the file or the environment variable. `None` when unset.
    /// Surrounding whitespace is dropped (a token file usually ends with a newline).
    pub fn resolve(&self) -> Result<Option<Secret>, SecretError> {
        self.validate()?;
        let value = if let Some(s) = self.inline {
            s.expose().trim().to_string()
        } else if let Some(path) = self.file {
            let bytes = std::fs::read(path)
                .map_err(|e| self.err("_file", format!("cannot read {}: {e}", path.display())))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| self.err("_file", format!("{} is not UTF-8", path.display())))?;
            let text = text.trim().to_string();
            if text.is_empty() {
                return Err(self.err("_file", format!("{} is empty", path.display())));
            }
            text
        } else if let Some(var) = self.env {
            let text = std::env::var(var)
                .map_err(|e| self.err("_env", format!("environment variable {var}: {e}")))?;
            let text = text.trim().to_string();
            if text.is_empty() {
                return Err(self.err("_env", format!("environment variable {var} is empty")));
            }
            text
        } else {
            return Ok(None);
        };
        Ok(Some(Secret(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::new("hunter2-xyz");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        #[derive(Serialize)]
        struct T {
            token: Option<Secret>,
        }
        let text = toml::to_string(&T {
            token: Some(s.clone()),
        })
        .unwrap();
        assert!(
            !text.contains("hunter2") && text.contains(REDACTED),
            "{text}"
        );
        assert_eq!(s.expose(), "hunter2-xyz");
        let back: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose(), "abc");
    }

    #[test]
    fn one_source_only_and_errors_name_the_key() {
        let inline = Secret::new("x");
        let file = PathBuf::from("/nonexistent/flowwarden-secret");
        let env = "FLOWWARDEN_TEST_SECRET_UNSET_VAR".to_string();
        let both = SecretRef::new("kafka.sasl_password", Some(&inline), Some(&file), None);
        let e = both.validate().unwrap_err();
        assert_eq!(e.key, "kafka.sasl_password");
        assert!(e.message.contains("sasl_password_file"), "{e}");
        let missing = SecretRef::new("kafka.sasl_password", None, Some(&file), None);
        let e = missing.resolve().unwrap_err();
        assert_eq!(e.key, "kafka.sasl_password_file");
        let unset = SecretRef::new("goldmane_http.bearer_token", None, None, Some(&env));
        let e = unset.resolve().unwrap_err();
        assert_eq!(e.key, "goldmane_http.bearer_token_env");
        assert!(
            e.message.contains("FLOWWARDEN_TEST_SECRET_UNSET_VAR"),
            "{e}"
        );
        let empty = Secret::new("  ");
        let e = SecretRef::new("k", Some(&empty), None, None)
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "k");
        assert_eq!(SecretRef::new("k", None, None, None).resolve(), Ok(None));
    }

    #[test]
    fn file_and_env_values_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "from-file\n").unwrap();
        let got = SecretRef::new("k", None, Some(&path), None)
            .resolve()
            .unwrap();
        assert_eq!(
            got.map(|s| s.expose().to_string()).as_deref(),
            Some("from-file")
        );
        std::fs::write(&path, "\n").unwrap();
        let e = SecretRef::new("k", None, Some(&path), None)
            .resolve()
            .unwrap_err();
        assert!(e.key == "k_file" && e.message.contains("empty"), "{e}");
        // A variable only this test sets.
        let var = "FLOWWARDEN_SECRET_UNIT_TEST_VALUE".to_string();
        std::env::set_var(&var, " from-env ");
        let got = SecretRef::new("k", None, None, Some(&var))
            .resolve()
            .unwrap();
        assert_eq!(
            got.map(|s| s.expose().to_string()).as_deref(),
            Some("from-env")
        );
        let e = SecretRef::new("k", None, Some(&path), None)
            .resolve()
            .unwrap_err();
        assert!(!e.to_string().contains("from-env"));
    }
}
