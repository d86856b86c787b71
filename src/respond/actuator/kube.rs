//! The Kubernetes API actuator (the `kube` crate): server-side apply (field manager `flowwarden`,
//! `force=true`) of Calico NetworkPolicies and of the install-time Tier/GlobalNetworkPolicy, label merge
//! patches on the workload's pods, and Kubernetes NetworkPolicy create/delete. RBAC: `config/rbac.yaml`.
//!
//! `apply` is blocking: the actuator owns a worker thread with a current-thread tokio runtime (the kube
//! client lives there), so it works from plain threads and from `spawn_blocking`; it must not be called
//! directly on an async worker thread. Releases tolerate `404 Not Found` and creates `409 AlreadyExists`,
//! so replays are idempotent.

use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use crossbeam_channel::{bounded, Sender};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::Client;
use serde_json::{json, Value};

use super::Actuator;
use crate::respond::config::{ActuatorConfig, QuarantineMode, RespondConfig};
use crate::respond::record::{ActionKind, ActionRecord};
use crate::respond::render::render_install;
use crate::respond::selector::{k8s_label_selector, QUARANTINE_LABEL};

enum Job {
    Apply(Box<ActionRecord>),
    Install(Box<RespondConfig>),
}

type Reply = Sender<anyhow::Result<()>>;

/// Applies actions through the Kubernetes API. See the module docs for the threading model.
pub struct KubeActuator {
    jobs: Option<Sender<(Job, Reply)>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeActuator").finish_non_exhaustive()
    }
}

impl KubeActuator {
    /// Connects: to `api_url` when set (e.g. `kubectl proxy`), else in-cluster config, then kubeconfig.
    pub fn new(cfg: &ActuatorConfig) -> anyhow::Result<Self> {
        let api_url = cfg.api_url.clone();
        let field_manager = cfg.field_manager.clone();
        let (jobs_tx, jobs_rx) = bounded::<(Job, Reply)>(64);
        let (ready_tx, ready_rx) = bounded::<anyhow::Result<()>>(1);
        let worker = std::thread::Builder::new()
            .name("flowwarden-kube".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow!("tokio runtime for the kube actuator: {e}")));
                        return;
                    }
                };
                let client = match rt.block_on(connect(api_url)) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let api = KubeApi {
                    client,
                    field_manager,
                };
                while let Ok((job, reply)) = jobs_rx.recv() {
                    let result = rt.block_on(async {
                        match job {
                            Job::Apply(action) => api.apply(&action).await,
                            Job::Install(cfg) => api.install(&cfg).await,
                        }
                    });
                    let _ = reply.send(result);
                }
            })
            .context("spawning the kube actuator thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("kube actuator thread ended during start-up"))??;
        Ok(Self {
            jobs: Some(jobs_tx),
            worker: Some(worker),
        })
    }

    /// Server-side applies the quarantine Tier and GlobalNetworkPolicy (`flowwarden policy install --apply`).
    pub fn install(&mut self, cfg: &RespondConfig) -> anyhow::Result<()> {
        self.run(Job::Install(Box::new(cfg.clone())))
    }

    fn run(&mut self, job: Job) -> anyhow::Result<()> {
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| anyhow!("kube actuator stopped"))?;
        let (reply_tx, reply_rx) = bounded(1);
        jobs.send((job, reply_tx))
            .map_err(|_| anyhow!("kube actuator thread is gone"))?;
        reply_rx
            .recv()
            .map_err(|_| anyhow!("kube actuator thread ended mid-request"))?
    }
}

impl Drop for KubeActuator {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Actuator for KubeActuator {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn apply(&mut self, action: &ActionRecord) -> anyhow::Result<()> {
        if !action.is_actionable() {
            return Ok(());
        }
        self.run(Job::Apply(Box::new(action.clone())))
    }
}

async fn connect(api_url: Option<String>) -> anyhow::Result<Client> {
    let config = match api_url {
        Some(url) => kube::Config::new(
            url.parse()
                .with_context(|| format!("respond.actuator.api_url {url:?}"))?,
        ),
        None => kube::Config::infer()
            .await
            .context("no Kubernetes config (in-cluster or kubeconfig)")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

struct KubeApi {
    client: Client,
    field_manager: String,
}

fn calico(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("projectcalico.org", "v3", kind),
        plural,
    )
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == code)
}

fn manifest_json(action: &ActionRecord) -> anyhow::Result<Value> {
    serde_yaml::from_str(&action.manifest)
        .with_context(|| format!("manifest of action {}", action.id))
}

impl KubeApi {
    fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }

    async fn apply(&self, action: &ActionRecord) -> anyhow::Result<()> {
        let ns = action.namespace.as_str();
        match (action.mode, action.action) {
            (_, ActionKind::Skip) => Ok(()),
            (QuarantineMode::Label, kind) => {
                self.label_pods(ns, action, kind == ActionKind::Quarantine)
                    .await
            }
            (QuarantineMode::Policy, kind) => {
                let api: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    ns,
                    &calico("NetworkPolicy", "networkpolicies"),
                );
                if kind == ActionKind::Quarantine {
                    let body = manifest_json(action)?;
                    api.patch(
                        &action.object_name,
                        &self.apply_params(),
                        &Patch::Apply(&body),
                    )
                    .await
                    .with_context(|| {
                        format!("applying Calico NetworkPolicy {ns}/{}", action.object_name)
                    })?;
                    Ok(())
                } else {
                    delete_tolerant(&api, &action.object_name, ns).await
                }
            }
            (QuarantineMode::K8s, kind) => {
                let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), ns);
                if kind == ActionKind::Quarantine {
                    let np: NetworkPolicy = serde_json::from_value(manifest_json(action)?)
                        .context("manifest is not a networking.k8s.io/v1 NetworkPolicy")?;
                    match api.create(&PostParams::default(), &np).await {
                        Ok(_) => Ok(()),
                        Err(e) if is_status(&e, 409) => Ok(()),
                        Err(e) => Err(e).with_context(|| {
                            format!("creating NetworkPolicy {ns}/{}", action.object_name)
                        }),
                    }
                } else {
                    delete_tolerant(&api, &action.object_name, ns).await
                }
            }
        }
    }

    /// Label mode: merge-patch `quarantine=true` onto (or remove it from) every pod matching the selector.
    async fn label_pods(
        &self,
        ns: &str,
        action: &ActionRecord,
        quarantine: bool,
    ) -> anyhow::Result<()> {
        if action.match_labels.is_empty() {
            return Err(anyhow!(
                "refusing to label pods of {} with an empty selector",
                action.workload
            ));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut selector = k8s_label_selector(&action.match_labels);
        if !quarantine {
            selector.push_str(&format!(",{QUARANTINE_LABEL}=true"));
        }
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("listing pods in {ns} with {selector}"))?;
        let value = if quarantine {
            json!("true")
        } else {
            Value::Null
        };
        let patch = json!({ "metadata": { "labels": { QUARANTINE_LABEL: value } } });
        for pod in list.items {
            let Some(name) = pod.metadata.name else {
                continue;
            };
            match pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("patching labels of pod {ns}/{name}"))
                }
            }
        }
        Ok(())
    }

    async fn install(&self, cfg: &RespondConfig) -> anyhow::Result<()> {
        let docs = render_install(cfg);
        for doc in serde_yaml::Deserializer::from_str(&docs) {
            let value: Value =
                serde::Deserialize::deserialize(doc).context("rendered install manifest")?;
            if value.is_null() {
                continue;
            }
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ar = match kind.as_str() {
                "Tier" => calico("Tier", "tiers"),
                "GlobalNetworkPolicy" => calico("GlobalNetworkPolicy", "globalnetworkpolicies"),
                other => return Err(anyhow!("unexpected kind {other:?} in install manifests")),
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            api.patch(&name, &self.apply_params(), &Patch::Apply(&value))
                .await
                .with_context(|| format!("applying {kind} {name}"))?;
        }
        Ok(())
    }
}

async fn delete_tolerant<K>(api: &Api<K>, name: &str, ns: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting {ns}/{name}")),
    }
}
