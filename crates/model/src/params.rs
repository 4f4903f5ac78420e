//! Parameters: where a model's weights come from and where they live.
//!
//! Modules ask for their weights through candle-nn's `VarBuilder` by checkpoint name
//! (`vb.pp("encoder").pp("layer").pp(0)…`), with an initialisation hint. [`ParamStore`] answers:
//! from the loaded checkpoint when it holds that name (with or without the usual `bert.`,
//! `model.`, `transformer.` prefixes), otherwise by initialising it from a seeded stream named
//! after the parameter. Every answer becomes a trainable `Var`, recorded by name, so the same
//! store serves training (all vars), saving (safetensors under the requested names) and reports
//! of missing and unused checkpoint weights.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::error::{ModelError, Result};
use rewardkit_data::Rng;

/// Prefixes that HF checkpoints put before the backbone's weights.
pub const BASE_PREFIXES: [&str; 5] = ["bert.", "model.", "transformer.", "roberta.", "backbone."];

#[derive(Default)]
struct Inner {
    vars: BTreeMap<String, Var>,
    /// Checkpoint tensors by their names in the file.
    source: HashMap<String, Tensor>,
    /// Checkpoint names that were used.
    used: BTreeSet<String>,
    /// Requested names that were initialised (not found in the checkpoint).
    initialised: BTreeSet<String>,
}

/// The weights of one model. Cheap to clone (shared).
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
    seed: u64,
    device: Device,
    /// Hand out detached tensors: a model built over a frozen view records no autograd graph
    /// (inference keeps no activations alive), yet shares the weights' storage with training.
    frozen: bool,
}

impl ParamStore {
    /// An empty store: every parameter is initialised from `seed`.
    pub fn new(seed: u64, device: &Device) -> Self {
        ParamStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            seed,
            device: device.clone(),
            frozen: false,
        }
    }

    /// The same weights, handed out without autograd tracking (for inference). Updates made
    /// through the trainable store are seen by models built over the view.
    pub fn frozen_view(&self) -> Self {
        ParamStore {
            frozen: true,
            ..self.clone()
        }
    }

    /// A store backed by checkpoint tensors (converted to f32).
    pub fn with_tensors(
        tensors: HashMap<String, Tensor>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let store = ParamStore::new(seed, device);
        {
            let mut inner = store.lock();
            for (name, t) in tensors {
                inner
                    .source
                    .insert(name, t.to_dtype(DType::F32)?.to_device(device)?);
            }
        }
        Ok(store)
    }

    /// A store backed by one or more `.safetensors` files.
    pub fn from_safetensors(
        paths: &[impl AsRef<Path>],
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        for path in paths {
            let path = path.as_ref();
            let loaded = candle_core::safetensors::load(path, device)
                .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
            tensors.extend(loaded);
        }
        ParamStore::with_tensors(tensors, seed, device)
    }

    /// A parameter as a model built over this store sees it: detached in a frozen view, so
    /// that its forward passes record no graph, also for parameters the trainable store made
    /// first (a model's evaluation copy; it used to keep every intermediate until the end).
    fn hand_out(&self, var: &Var) -> Tensor {
        if self.frozen {
            var.as_tensor().detach()
        } else {
            var.as_tensor().clone()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while holding it; the map is
        // still consistent (each operation is a single insert).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A `VarBuilder` over this store (f32).
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, self.device.clone())
    }

    /// Every parameter, by name, in name order (deterministic).
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.lock()
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn num_params(&self) -> usize {
        self.lock().vars.values().map(|v| v.elem_count()).sum()
    }

    /// Parameters that were not in the checkpoint and were initialised.
    pub fn initialised(&self) -> Vec<String> {
        self.lock().initialised.iter().cloned().collect()
    }

    /// Checkpoint tensors that no module asked for.
    pub fn unused(&self) -> Vec<String> {
        let inner = self.lock();
        let mut v: Vec<String> = inner
            .source
            .keys()
            .filter(|k| !inner.used.contains(*k))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Drops the checkpoint tensors (after the model is built) to free memory.
    pub fn release_source(&self) {
        self.lock().source.clear();
    }

    /// Saves every parameter under its name, atomically ([`save_tensors_atomic`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self
            .lock()
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        save_tensors_atomic(&tensors, path)
    }

    /// Overwrites parameters with the tensors of a safetensors file (every parameter must be
    /// there, with its shape), e.g. to resume training.
    pub fn load_values(&self, path: &Path) -> Result<()> {
        let loaded = candle_core::safetensors::load(path, &self.device)
            .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
        let inner = self.lock();
        for (name, var) in &inner.vars {
            let t = loaded.get(name).ok_or_else(|| {
                ModelError::Weights(format!("{}: no tensor `{name}`", path.display()))
            })?;
            if t.dims() != var.dims() {
                return Err(ModelError::Weights(format!(
                    "{}: `{name}` has shape {:?}, the model needs {:?}",
                    path.display(),
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    /// The checkpoint name that holds `name`, trying the usual HF prefixes both ways.
    fn resolve(inner: &Inner, name: &str) -> Option<String> {
        if inner.source.contains_key(name) {
            return Some(name.to_string());
        }
        for p in BASE_PREFIXES {
            if let Some(stripped) = name.strip_prefix(p) {
                if inner.source.contains_key(stripped) {
                    return Some(stripped.to_string());
                }
            }
            let prefixed = format!("{p}{name}");
            if inner.source.contains_key(&prefixed) {
                return Some(prefixed);
            }
        }
        None
    }
}

/// Writes tensors as safetensors to `path` atomically ([`rewardkit_io::write_file`]: a
/// temporary file beside it, synced, then renamed; removed on failure), mode 0644 under the usual
/// umask. Names and dtypes are kept as they are.
pub fn save_tensors_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let bytes = safetensors::serialize(tensors, None)
        .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
    Ok(rewardkit_io::write_file(path, &bytes)?)
}

/// Values for a new parameter, from a stream named after it.
fn init_values(seed: u64, name: &str, n: usize, init: Init) -> Vec<f32> {
    let mut rng = Rng::derive(seed, &["init", name]);
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| (mean + stdev * rng.normal()) as f32)
            .collect(),
        Init::Uniform { lo, up } => (0..n)
            .map(|_| (lo + (up - lo) * rng.uniform()) as f32)
            .collect(),
        // Kaiming is not used by rewardkit's modules; treat it as N(0, 0.02) like HF's default.
        Init::Kaiming { .. } => (0..n).map(|_| (0.02 * rng.normal()) as f32).collect(),
    }
}

impl candle_nn::var_builder::SimpleBackend for ParamStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut inner = self.lock();
        if let Some(v) = inner.vars.get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter `{name}` requested with shapes {:?} and {s:?}",
                    v.shape()
                );
            }
            return Ok(self.hand_out(v));
        }
        let tensor = match ParamStore::resolve(&inner, name) {
            Some(key) => {
                let t = inner.source[&key].clone();
                if t.shape() != &s {
                    candle_core::bail!(
                        "checkpoint tensor `{key}` has shape {:?}, the model needs {s:?}",
                        t.shape()
                    );
                }
                inner.used.insert(key);
                t
            }
            None => {
                inner.initialised.insert(name.to_string());
                let values = init_values(self.seed, name, s.elem_count(), h);
                Tensor::from_vec(values, s, dev)?
            }
        };
        let var = Var::from_tensor(&tensor.to_dtype(dtype)?.to_device(dev)?)?;
        let t = self.hand_out(&var);
        inner.vars.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let inner = self.lock();
        if let Some(v) = inner.vars.get(name) {
            return Ok(self.hand_out(v));
        }
        match ParamStore::resolve(&inner, name) {
            Some(key) => inner.source[&key].to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("no tensor `{name}`"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        let inner = self.lock();
        inner.vars.contains_key(name) || ParamStore::resolve(&inner, name).is_some()
    }
}
