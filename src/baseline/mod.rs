//! Per-workload baselines: what each workload normally does, learned online from closed windows.
//!
//! This module owns the statistics (decayed mean and variance), the sketches, the concurrent store and
//! its snapshots. It must not decide what is anomalous (detectors do).

pub mod sketch;

use serde::{Deserialize, Serialize};

/// History of one workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Windows of history folded in.
    pub windows_seen: u64,
}

use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use dashmap::DashMap;

/// `[baseline]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {}

/// All baselines, keyed by workload; each workload is only written by the shard that owns it.
#[derive(Debug, Default)]
pub struct BaselineStore {
    map: DashMap<WorkloadId, Baseline>,
    cfg: BaselineConfig,
}

impl BaselineStore {
    /// An empty store.
    pub fn new(cfg: BaselineConfig) -> Self {
        BaselineStore {
            map: DashMap::new(),
            cfg,
        }
    }

    /// A workload's baseline.
    pub fn get(&self, id: WorkloadId) -> Option<dashmap::mapref::one::Ref<'_, WorkloadId, Baseline>> {
        self.map.get(&id)
    }

    /// Folds a closed window into the workload's baseline.
    pub fn update(&self, id: WorkloadId, _agg: &WindowAggregate, _window: i64, _anomalous: bool) {
        let _ = &self.cfg;
        self.map.entry(id).or_default().windows_seen += 1;
    }

    /// Number of workloads with a baseline.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
