//! The actuators against real I/O: the Kubernetes actuator against an HTTP server inside the test that
//! plays the API server (checking paths, verbs, content types and bodies), and the directory actuator
//! on a temp dir.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use flowwarden::alert::{alert_id, Alert, Band, Severity, ALERT_TYPE};
use flowwarden::respond::{
    ActionKind, ActionRecord, Actuator, ActuatorConfig, DirectoryActuator, KubeActuator,
    QuarantineMode, RespondConfig, Responder,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const T0: i64 = 1_700_000_000;
const WORKLOAD: &str = "shop/cart-7d9c8b6f4-*";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
}

/// A tiny stand-in for the API server: remembers objects by path, answers 404/409 like Kubernetes.
#[derive(Default)]
struct FakeApi {
    seen: Vec<Seen>,
    objects: BTreeSet<String>,
    fail_all: bool,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": if code < 300 {"Success"} else {"Failure"},
           "reason": reason, "message": reason, "code": code})
}

impl FakeApi {
    fn answer(&mut self, s: &Seen) -> (u16, Value) {
        if self.fail_all {
            return (500, status(500, "InternalError"));
        }
        let pods_prefix = "/api/v1/namespaces/shop/pods";
        match s.method.as_str() {
            "GET" if s.path == pods_prefix => {
                let items: Vec<Value> = ["cart-7d9c8b6f4-abcde", "cart-7d9c8b6f4-fghij"]
                    .iter()
                    .map(|n| json!({"metadata": {"name": n, "namespace": "shop"}}))
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            "PATCH" if s.path.starts_with(pods_prefix) => {
                let name = s.path.rsplit('/').next().unwrap_or_default();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"}}),
                )
            }
            "PATCH" => {
                self.objects.insert(s.path.clone());
                (200, s.body.clone())
            }
            "POST" => {
                let name = s.body["metadata"]["name"].as_str().unwrap_or_default();
                let path = format!("{}/{name}", s.path);
                if !self.objects.insert(path) {
                    return (409, status(409, "AlreadyExists"));
                }
                (201, s.body.clone())
            }
            "DELETE" => {
                if self.objects.remove(&s.path) {
                    (200, status(200, "Deleted"))
                } else {
                    (404, status(404, "NotFound"))
                }
            }
            _ => (405, status(405, "MethodNotAllowed")),
        }
    }
}

struct Server {
    url: String,
    api: Arc<Mutex<FakeApi>>,
}

impl Server {
    fn start() -> Self {
        let api = Arc::new(Mutex::new(FakeApi::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = api.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let api = shared.clone();
                    tokio::spawn(async move {
                        let _ = serve(stream, api).await;
                    });
                }
            });
        });
        let addr = rx.recv().unwrap();
        Server {
            url: format!("http://{addr}"),
            api,
        }
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.api.lock().unwrap().seen)
    }
}

/// Serves requests on one connection (keep-alive) until the client closes it.
async fn serve(stream: tokio::net::TcpStream, api: Arc<Mutex<FakeApi>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut body = Vec::new();
        if let Some(len) = headers
            .get("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            body.resize(len, 0);
            reader.read_exact(&mut body).await?;
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let query = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let seen = Seen {
            method,
            path: path.to_string(),
            query,
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        let (code, answer) = {
            let mut api = api.lock().unwrap();
            let r = api.answer(&seen);
            api.seen.push(seen);
            r
        };
        let answer = answer.to_string();
        let head = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(answer.as_bytes()).await?;
    }
}

fn alert(time: i64) -> Alert {
    Alert {
        id: alert_id("port_scan", WORKLOAD, time),
        time,
        kind: ALERT_TYPE.into(),
        origin: "port_scan".into(),
        severity: 92,
        severity_label: Severity::Critical,
        description: "port scan".into(),
        source_ip: None,
        source_port: None,
        source_name: "-".into(),
        source_name_aggr: "cart-7d9c8b6f4-*".into(),
        source_namespace: "shop".into(),
        dest_ip: None,
        dest_port: None,
        dest_name: "-".into(),
        dest_name_aggr: "pvt".into(),
        dest_namespace: "-".into(),
        host: None,
        attack_vector: "Network".into(),
        mitre_tactic: "Discovery".into(),
        mitre_ids: vec!["T1046".into()],
        mitigations: vec![],
        record: Value::Null,
        dismissed: false,
        detector: "port_scan".into(),
        workload: WORKLOAD.into(),
        workload_labels: vec![
            "app=cart".into(),
            "pod-template-hash=7d9c8b6f4".into(),
            "tier=web".into(),
        ],
        window_start: time - 60,
        window_end: time,
        score: 12.0,
        observed: 400.0,
        expected: 4.0,
        band: Band {
            lower: 0.0,
            upper: 12.0,
        },
        feature: "distinct_dest_ports".into(),
        soc2: vec!["CC7.2".into()],
        provisional: false,
    }
}

/// The quarantine and the release a live (not dry-run) responder emits for one alert.
fn quarantine_and_release(mode: QuarantineMode) -> (ActionRecord, ActionRecord) {
    let cfg = RespondConfig {
        dry_run: false,
        mode,
        ..RespondConfig::default()
    };
    let mut r = Responder::new(cfg).unwrap();
    let q = r.on_alert(&alert(T0), T0).pop().unwrap();
    assert_eq!(q.action, ActionKind::Quarantine, "{}", q.reason);
    let rel = r.release(WORKLOAD, "alice", T0 + 60).unwrap();
    (q, rel)
}

fn actuator(server: &Server) -> KubeActuator {
    KubeActuator::new(&ActuatorConfig {
        api_url: Some(server.url.clone()),
        ..ActuatorConfig::default()
    })
    .unwrap()
}

#[test]
fn kube_policy_mode_server_side_applies_and_deletes() {
    let server = Server::start();
    let mut kube = actuator(&server);
    let (q, rel) = quarantine_and_release(QuarantineMode::Policy);
    kube.apply(&q).unwrap();
    let seen = server.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    let path = format!(
        "/apis/projectcalico.org/v3/namespaces/shop/networkpolicies/{}",
        q.object_name
    );
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        ("PATCH", path.as_str())
    );
    assert_eq!(
        s.query.get("fieldManager").map(String::as_str),
        Some("flowwarden")
    );
    assert_eq!(s.query.get("force").map(String::as_str), Some("true"));
    assert_eq!(s.content_type, "application/apply-patch+yaml");
    assert_eq!(s.body["apiVersion"], "projectcalico.org/v3");
    assert_eq!(s.body["kind"], "NetworkPolicy");
    assert_eq!(s.body["metadata"]["namespace"], "shop");
    assert_eq!(
        s.body["spec"]["selector"],
        "app == \"cart\" && tier == \"web\""
    );
    assert_eq!(s.body["spec"]["tier"], "flowwarden-quarantine");

    kube.apply(&rel).unwrap();
    kube.apply(&rel).unwrap(); // replayed release: 404 is fine
    let seen = server.take();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.method == "DELETE" && s.path == path),
        "{seen:?}"
    );
}

#[test]
fn kube_label_mode_lists_pods_and_merge_patches_each() {
    let server = Server::start();
    let mut kube = actuator(&server);
    let (q, rel) = quarantine_and_release(QuarantineMode::Label);
    kube.apply(&q).unwrap();
    let seen = server.take();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/api/v1/namespaces/shop/pods")
    );
    assert_eq!(
        seen[0].query.get("labelSelector").map(String::as_str),
        Some("app=cart,tier=web")
    );
    for (s, pod) in seen[1..]
        .iter()
        .zip(["cart-7d9c8b6f4-abcde", "cart-7d9c8b6f4-fghij"])
    {
        assert_eq!(s.method, "PATCH");
        assert_eq!(s.path, format!("/api/v1/namespaces/shop/pods/{pod}"));
        assert_eq!(s.content_type, "application/merge-patch+json");
        assert_eq!(
            s.body,
            json!({"metadata": {"labels": {"quarantine": "true"}}})
        );
    }

    kube.apply(&rel).unwrap();
    let seen = server.take();
    assert_eq!(
        seen[0].query.get("labelSelector").map(String::as_str),
        Some("app=cart,tier=web,quarantine=true")
    );
    assert_eq!(seen.len(), 3);
    assert!(seen[1..]
        .iter()
        .all(|s| s.body == json!({"metadata": {"labels": {"quarantine": null}}})));
}

#[test]
fn kube_k8s_mode_creates_and_deletes_network_policy() {
    let server = Server::start();
    let mut kube = actuator(&server);
    let (q, rel) = quarantine_and_release(QuarantineMode::K8s);
    kube.apply(&q).unwrap();
    kube.apply(&q).unwrap(); // replay: 409 AlreadyExists is fine
    let seen = server.take();
    assert_eq!(seen.len(), 2);
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        (
            "POST",
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies"
        )
    );
    assert_eq!(s.content_type, "application/json");
    assert_eq!(
        s.body["spec"]["podSelector"]["matchLabels"],
        json!({"app": "cart", "tier": "web"})
    );
    assert_eq!(s.body["spec"]["policyTypes"], json!(["Ingress", "Egress"]));

    kube.apply(&rel).unwrap();
    let seen = server.take();
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(
        seen[0].path,
        format!(
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/{}",
            q.object_name
        )
    );
}

#[test]
fn kube_install_applies_tier_and_global_policy() {
    let server = Server::start();
    let mut kube = actuator(&server);
    kube.install(&RespondConfig::default()).unwrap();
    let seen = server.take();
    let paths: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            (
                "PATCH",
                "/apis/projectcalico.org/v3/tiers/flowwarden-quarantine"
            ),
            (
                "PATCH",
                "/apis/projectcalico.org/v3/globalnetworkpolicies/flowwarden-quarantine.quarantine"
            ),
        ]
    );
    assert!(seen
        .iter()
        .all(|s| s.content_type == "application/apply-patch+yaml"));
    assert_eq!(seen[0].body["spec"]["order"], json!(150.0));
    assert_eq!(seen[1].body["spec"]["selector"], "quarantine == \"true\"");
}

#[test]
fn kube_skips_dry_run_and_reports_server_errors() {
    let server = Server::start();
    let mut kube = actuator(&server);
    let mut r = Responder::new(RespondConfig::default()).unwrap();
    let dry = r.on_alert(&alert(T0), T0).pop().unwrap();
    assert!(dry.dry_run);
    kube.apply(&dry).unwrap();
    assert!(server.take().is_empty(), "dry-run changes nothing");

    server.api.lock().unwrap().fail_all = true;
    let (q, _) = quarantine_and_release(QuarantineMode::Policy);
    let err = kube.apply(&q).unwrap_err();
    assert!(format!("{err:#}").contains("NetworkPolicy"), "{err:#}");
}

#[test]
fn directory_actuator_writes_then_removes_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut act = DirectoryActuator::new(dir.path().join("manifests")).unwrap();
    let (q, rel) = quarantine_and_release(QuarantineMode::Policy);
    act.apply(&q).unwrap();
    let path = act.manifest_path(WORKLOAD);
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["kind"].as_str(), Some("NetworkPolicy"));
    assert_eq!(
        doc["metadata"]["name"].as_str(),
        Some(q.object_name.as_str())
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("manifests"))
        .unwrap()
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one file per active quarantine, no temp files left"
    );

    act.apply(&rel).unwrap();
    assert!(!path.exists());
    act.apply(&rel).unwrap(); // replay of the release is fine

    let mut r = Responder::new(RespondConfig::default()).unwrap();
    let dry = r.on_alert(&alert(T0), T0).pop().unwrap();
    act.apply(&dry).unwrap();
    assert!(!path.exists(), "dry-run writes nothing");
}

#[test]
fn the_requests_made_are_the_ones_rbac_yaml_grants() {
    use flowwarden::respond::actuator::api_grants::{
        required_by_request, GrantKind, INSTALLER_GRANTS, RESPONDER_GRANTS,
    };
    let server = Server::start();
    let mut kube = actuator(&server);
    let mut made = BTreeSet::new();
    for mode in [
        QuarantineMode::Label,
        QuarantineMode::Policy,
        QuarantineMode::K8s,
    ] {
        let (q, rel) = quarantine_and_release(mode);
        kube.apply(&q).unwrap();
        kube.apply(&rel).unwrap();
    }
    let requests = |seen: Vec<Seen>| -> BTreeSet<(String, String, String)> {
        seen.iter()
            .map(|s| {
                let g = required_by_request(&s.method, &s.path)
                    .unwrap_or_else(|| panic!("not a resource request: {} {}", s.method, s.path));
                (g.group, g.resource, g.verb)
            })
            .collect()
    };
    made.extend(requests(server.take()));
    let listed = |grants: &[flowwarden::respond::actuator::api_grants::ApiGrant]| {
        grants
            .iter()
            .filter(|g| g.kind == GrantKind::Request)
            .map(|g| {
                (
                    g.group.to_string(),
                    g.resource.to_string(),
                    g.verb.to_string(),
                )
            })
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(made, listed(RESPONDER_GRANTS), "responder requests");
    kube.install(&RespondConfig::default()).unwrap();
    assert_eq!(
        requests(server.take()),
        listed(INSTALLER_GRANTS),
        "install requests"
    );
}
