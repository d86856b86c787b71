//! Least privilege and secrets, end to end: the Goldmane receiver refuses an unauthenticated
//! non-loopback listen address, secrets never reach `check-config`'s output or the daemon's debug
//! logs, Kafka security settings reach librdkafka (SASL against a tansu broker that requires
//! authentication; TLS against a plaintext broker fails with a clear error), and
//! `config/rbac.yaml` grants exactly what the Kubernetes actuator uses.

mod kafka_support;

use flowwarden::kafka::KafkaConfig;
use flowwarden::respond::actuator::api_grants::{ApiGrant, INSTALLER_GRANTS, RESPONDER_GRANTS};
use flowwarden::secret::Secret;
use kafka_support::{free_port, tansu_path};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn check_config(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("check-config").arg(config).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run check-config")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `flowwarden --log-format json run --config FILE`, stderr to `log`.
fn spawn_daemon(config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn flowwarden run")
}

/// Waits until the file contains `needle` (or the child exits, or 60 s pass).
fn wait_for_log(child: &mut Child, log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited ({status}) before logging {needle:?}:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// Goldmane receiver: no unauthenticated non-loopback listener unless asked for.

fn goldmane_config(listen: &str, extra: &str) -> String {
    format!(
        "[source]\nkind = \"goldmane-http\"\n[metrics]\nenabled = false\n\
         [goldmane_http]\nlisten = \"{listen}\"\n{extra}"
    )
}

#[test]
fn goldmane_receiver_refuses_a_public_address_without_tls_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write(
        dir.path(),
        "open.toml",
        &goldmane_config(&format!("0.0.0.0:{port}"), ""),
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("goldmane_http.listen"),
        "{}",
        text(&out)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing may listen after a refused start"
    );
    let out = check_config(&config, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn goldmane_receiver_accepts_a_public_address_with_tls_a_token_or_the_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "a-token-value\n");
    let listen = format!("0.0.0.0:{}", free_port());
    let cases = [
        (
            "tls",
            "tls_cert = \"/etc/flowwarden/tls.crt\"\ntls_key = \"/etc/flowwarden/tls.key\"\n"
                .to_string(),
        ),
        (
            "token",
            format!("bearer_token_file = \"{}\"\n", token.display()),
        ),
        ("opt-in", "allow_insecure_listen = true\n".to_string()),
    ];
    for (name, extra) in &cases {
        let config = write(
            dir.path(),
            &format!("{name}.toml"),
            &goldmane_config(&listen, extra),
        );
        let out = check_config(&config, &[]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
    }
    // The opt-in really starts, and says that anyone can push.
    let config = dir.path().join("opt-in.toml");
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&config, &log, &[]);
    let text = wait_for_log(&mut child, &log, "goldmane-http listening");
    stop(child);
    assert!(text.contains("accepts pushes from any client"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Secrets.

/// Distinct values, so a leak names the secret that leaked.
const TOKEN: &str = "tok-9f3a1c77e2b4";
const SASL_PASSWORD: &str = "sasl-5d81b0c4aa26";
const KEY_PASSWORD: &str = "keypw-0c6e93f1d5b8";
const PASSTHROUGH_SECRET: &str = "oauth-e7a2d4c9b130";

fn secrets_config(dir: &Path, source: &str, brokers: &str) -> PathBuf {
    let token = write(dir, "token", &format!("{TOKEN}\n"));
    let config = format!(
        r#"
[source]
kind = "{source}"
[log]
level = "debug"
[metrics]
enabled = false
[goldmane_http]
listen = "127.0.0.1:{port}"
bearer_token_file = "{token}"
[kafka]
bootstrap_servers = "{brokers}"
security_protocol = "sasl_plaintext"
sasl_mechanism = "PLAIN"
sasl_username = "flowwarden"
sasl_password_env = "FW_TEST_SASL_PASSWORD"
ssl_key_password = "{KEY_PASSWORD}"
alerts_topic = "alerts"
[kafka.librdkafka]
"sasl.oauthbearer.config" = "{PASSTHROUGH_SECRET}"
"debug" = "broker,security,conf"
"message.timeout.ms" = "3000"
"#,
        port = free_port(),
        token = token.display(),
    );
    write(dir, "secrets.toml", &config)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [TOKEN, SASL_PASSWORD, KEY_PASSWORD, PASSTHROUGH_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

#[test]
fn check_config_prints_every_secret_as_stars() {
    let dir = tempfile::tempdir().unwrap();
    let config = secrets_config(dir.path(), "simulate", "127.0.0.1:9");
    let out = check_config(&config, &[("FW_TEST_SASL_PASSWORD", SASL_PASSWORD)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert_no_secret("check-config", &text(&out));
    assert!(printed.contains("ssl_key_password = \"***\""), "{printed}");
    assert!(
        printed.contains("\"sasl.oauthbearer.config\" = \"***\""),
        "{printed}"
    );
    // Where the others come from is shown, not their value.
    assert!(
        printed.contains("sasl_password_env = \"FW_TEST_SASL_PASSWORD\""),
        "{printed}"
    );
    assert!(printed.contains("bearer_token_file = "), "{printed}");
}

#[test]
fn an_unreadable_or_doubly_given_secret_exits_2_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = write(
        dir.path(),
        "missing.toml",
        "[kafka]\nsasl_password_file = \"/nonexistent/flowwarden/pw\"\n",
    );
    let out = check_config(&missing, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("kafka.sasl_password_file"),
        "{}",
        text(&out)
    );

    let unset = write(
        dir.path(),
        "unset.toml",
        "[goldmane_http]\nbearer_token_env = \"FW_TEST_UNSET_TOKEN_VAR\"\n",
    );
    let out = check_config(&unset, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("goldmane_http.bearer_token_env"),
        "{}",
        text(&out)
    );

    let both = write(
        dir.path(),
        "both.toml",
        &format!("[kafka]\nsasl_password = \"{SASL_PASSWORD}\"\nsasl_password_env = \"X\"\n"),
    );
    let out = check_config(&both, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("kafka.sasl_password"), "{}", text(&out));
    assert_no_secret("the error", &text(&out));
}

#[test]
fn the_daemon_never_logs_secrets_even_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: librdkafka keeps trying (and logging) with the SASL settings.
    let dead_broker = format!("127.0.0.1:{}", free_port());
    let config = secrets_config(dir.path(), "goldmane-http", &dead_broker);
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&config, &log, &[("FW_TEST_SASL_PASSWORD", SASL_PASSWORD)]);
    let started = wait_for_log(&mut child, &log, "goldmane-http listening");
    let addr = started
        .lines()
        .find(|l| l.contains("goldmane-http listening"))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["fields"]["addr"].as_str().map(str::to_string))
        .expect("listening line names the address");
    // A wrong token, then the right one (the push itself may be refused or accepted).
    for token in ["wrong-token", TOKEN] {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = "{\"not\":\"a flow\"}\n";
        write!(
            s,
            "POST /api/v1/flows/bulk HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        assert_no_secret("the HTTP answer", &answer);
    }
    // librdkafka's own debug lines about the (failing) broker connection show up too.
    let text = wait_for_log(&mut child, &log, "librdkafka");
    std::thread::sleep(Duration::from_secs(2));
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    assert!(
        text.contains("\"level\":\"DEBUG\""),
        "debug logging is on:\n{text}"
    );
    // librdkafka dumped its configuration (debug = conf), so a leak would be here.
    assert!(
        text.contains("sasl.password = [redacted]"),
        "librdkafka's configuration dump is in the log:\n{text}"
    );
    assert_no_secret("the daemon log", &text);
}

// ---------------------------------------------------------------------------------------------
// Kafka security settings.

#[test]
fn kafka_security_settings_become_exactly_these_librdkafka_properties() {
    let dir = tempfile::tempdir().unwrap();
    let pw = write(dir.path(), "pw", &format!("{SASL_PASSWORD}\n"));
    let mut cfg = KafkaConfig {
        bootstrap_servers: "b1:9093,b2:9093".into(),
        security_protocol: Some("sasl_ssl".into()),
        ssl_ca_location: Some("/ca.pem".into()),
        ssl_certificate_location: Some("/client.pem".into()),
        ssl_key_location: Some("/client.key".into()),
        ssl_key_password: Some(Secret::new(KEY_PASSWORD)),
        sasl_mechanism: Some("SCRAM-SHA-512".into()),
        sasl_username: Some("fw".into()),
        sasl_password_file: Some(pw),
        ..KafkaConfig::default()
    };
    cfg.librdkafka = [("fetch.min.bytes".to_string(), "1".to_string())]
        .into_iter()
        .collect();
    cfg.validate().expect("valid");
    let props = cfg.client_properties().expect("secrets readable");
    let expected: Vec<(String, String)> = [
        ("bootstrap.servers", "b1:9093,b2:9093"),
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.location", "/ca.pem"),
        ("ssl.certificate.location", "/client.pem"),
        ("ssl.key.location", "/client.key"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "fw"),
        ("sasl.password", SASL_PASSWORD),
        ("ssl.key.password", KEY_PASSWORD),
        ("fetch.min.bytes", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(props, expected);
    // The ClientConfig handed to rdkafka carries them too.
    let client = cfg.client_config();
    assert_eq!(client.get("sasl.password"), Some(SASL_PASSWORD));
    assert_eq!(client.get("ssl.key.password"), Some(KEY_PASSWORD));
    assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
    // Printing the config shows none of them.
    assert_no_secret("KafkaConfig's Debug", &format!("{cfg:?}"));
    // Bad values are refused naming the key.
    let bad = KafkaConfig {
        security_protocol: Some("tls".into()),
        ..KafkaConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().0, "kafka.security_protocol");
    let half = KafkaConfig {
        ssl_key_location: Some("/k".into()),
        ..KafkaConfig::default()
    };
    assert_eq!(
        half.validate().unwrap_err().0,
        "kafka.ssl_certificate_location"
    );
}

/// A tansu broker that requires SASL (`--authentication`), killed on drop.
struct AuthBroker {
    child: Child,
    port: u16,
}

impl AuthBroker {
    fn start(tansu: &Path) -> AuthBroker {
        let port = free_port();
        let child = Command::new(tansu)
            .args([
                "broker",
                "--authentication",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        AuthBroker { child, port }
    }
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a client built from `cfg` can read the cluster's metadata.
fn metadata_ok(cfg: &KafkaConfig) -> Result<usize, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = cfg
        .client_config()
        .set("group.id", "privilege-test")
        .create()
        .map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, Duration::from_secs(8))
        .map(|m| m.brokers().len())
        .map_err(|e| e.to_string())
}

/// The daemon's config for a Kafka source at `brokers` with these `[kafka]` lines.
fn kafka_source_config(dir: &Path, brokers: &str, security: &str) -> PathBuf {
    write(
        dir,
        "kafka.toml",
        &format!(
            "[source]\nkind = \"kafka\"\n[metrics]\nenabled = false\n[kafka]\n\
             bootstrap_servers = \"{brokers}\"\ntopics = [\"flows\"]\n{security}\n\
             [kafka.librdkafka]\n\"socket.connection.setup.timeout.ms\" = \"3000\"\n"
        ),
    )
}

/// tansu 0.6 offers SCRAM-SHA-256/512 (and OAUTHBEARER) but keeps users in its storage, which a
/// client can only fill once logged in; so this checks the handshake, not a successful login: a
/// client without SASL is refused, and with SCRAM settings the daemon runs the SCRAM exchange
/// (the broker answers for an unknown user) instead of being cut off unauthenticated.
#[test]
fn sasl_settings_reach_a_broker_that_requires_authentication() {
    let Some(tansu) = tansu_path() else {
        eprintln!("SKIP sasl test: tansu is not installed (scripts/install-tansu.sh)");
        return;
    };
    let broker = AuthBroker::start(&tansu);
    let brokers = format!("127.0.0.1:{}", broker.port);
    let plain = KafkaConfig {
        bootstrap_servers: brokers.clone(),
        ..KafkaConfig::default()
    };
    assert!(
        metadata_ok(&plain).is_err(),
        "the broker requires SASL: a client without it must be refused"
    );
    let dir = tempfile::tempdir().unwrap();
    let pw = write(dir.path(), "pw", &format!("{SASL_PASSWORD}\n"));
    let config = kafka_source_config(
        dir.path(),
        &brokers,
        &format!(
            "security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
             sasl_username = \"flowwarden\"\nsasl_password_file = \"{}\"\n",
            pw.display()
        ),
    );
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&config, &log, &[]);
    let text = wait_for_log(&mut child, &log, "SASL");
    std::thread::sleep(Duration::from_secs(1));
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    // The SCRAM exchange ran: the broker looked the user up (and does not know it).
    assert!(
        text.contains("SASL SCRAM authentication failed: broker responded with unknown-user"),
        "{text}"
    );
    assert!(
        text.contains(&format!("sasl_plaintext://{brokers}")),
        "{text}"
    );
    assert_no_secret("the daemon log", &text);
}

/// tansu 0.6 accepts `--cert`/`--key` but serves plaintext only, so TLS can only be tested
/// failing: a TLS client against a plaintext broker must fail, saying so and naming the broker.
#[test]
fn tls_to_a_plaintext_broker_fails_with_a_clear_error() {
    if tansu_path().is_none() {
        eprintln!("SKIP tls test: tansu is not installed (scripts/install-tansu.sh)");
        return;
    }
    let broker = kafka_support::Broker::start(false);
    let dir = tempfile::tempdir().unwrap();
    let config = kafka_source_config(
        dir.path(),
        &broker.brokers(),
        "security_protocol = \"ssl\"\n",
    );
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&config, &log, &[]);
    let text = wait_for_log(&mut child, &log, "SSL_HANDSHAKE");
    stop(child);
    let line = text
        .lines()
        .find(|l| l.contains("SSL_HANDSHAKE"))
        .unwrap_or_default();
    assert!(
        line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\""),
        "{line}"
    );
    assert!(
        line.contains(&format!("ssl://{}", broker.brokers())),
        "names the broker and the protocol: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// RBAC.

/// One RBAC permission: (group, resource, verb, resourceNames).
type Rule = (String, String, String, Vec<String>);

/// (group, resource, verb, names) of every rule of the ClusterRole `name` in rbac.yaml.
fn rules_of(docs: &[serde_yaml::Value], name: &str) -> BTreeSet<Rule> {
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("ClusterRole {name} in config/rbac.yaml"));
    let strings = |v: &serde_yaml::Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.clone(), resource.clone(), verb, names.clone()));
                }
            }
        }
    }
    out
}

fn expected(grants: &[ApiGrant]) -> BTreeSet<Rule> {
    grants
        .iter()
        .map(|g| {
            (
                g.group.to_string(),
                g.resource.to_string(),
                g.verb.to_string(),
                g.names.iter().map(|n| n.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn rbac_yaml_grants_exactly_what_the_actuator_uses() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/rbac.yaml"))
        .expect("config/rbac.yaml");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .collect();
    assert_eq!(
        rules_of(&docs, "flowwarden-responder"),
        expected(RESPONDER_GRANTS)
    );
    assert_eq!(
        rules_of(&docs, "flowwarden-installer"),
        expected(INSTALLER_GRANTS)
    );
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        assert!(
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding"
            ]
            .contains(&kind),
            "unexpected {kind}"
        );
        if kind == "ClusterRole" || kind == "Role" {
            let dump = serde_yaml::to_string(&doc["rules"]).unwrap_or_default();
            assert!(
                !dump.contains("'*'"),
                "no wildcard verbs or resources: {dump}"
            );
            assert!(!dump.contains("secrets"), "no access to Secrets: {dump}");
        }
        if kind == "ClusterRoleBinding" {
            assert_eq!(
                doc["roleRef"]["name"], "flowwarden-responder",
                "only the responder role is bound cluster-wide"
            );
        }
    }
}
