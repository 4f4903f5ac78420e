//! Parameters: where a model's weights come from and where they live.
//!
//! Modules ask for their weights through candle-nn's `VarBuilder` by checkpoint name
//! (`vb.pp("encoder").pp("layer").pp(0)…`), with an initialisation hint. [`ParamStore`] answers:
//! from the loaded checkpoint when it holds that name (with or without the usual `bert.`,
//! `model.`, `transformer.` prefixes), otherwise by initialising it from a seeded stream named
//! after the parameter. Every answer becomes a trainable `Var`, recorded by name, so the same
//! store serves training (all vars), saving (safetensors under the requested names) and reports
//! of missing and unused checkpoint weights.
//!
//! With a [`LoraPlan`] ([`ParamStore::with_lora`]) only the adapters and the plan's
//! `modules_to_save` become `Var`s; every other weight is kept as a plain tensor (no gradient,
//! not in [`ParamStore::vars`]), and [`ParamStore::base_view`] builds models without adapters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::backbone::ArchConfig;
use crate::error::{ModelError, Result};
use crate::lora::{is_target, LoraConfig, LORA_SPEC};
use rewardkit_data::Rng;

/// Prefixes that HF checkpoints put before the backbone's weights.
pub const BASE_PREFIXES: [&str; 5] = ["bert.", "model.", "transformer.", "roberta.", "backbone."];

/// Where a LoRA store puts adapters and what it trains besides them.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPlan {
    pub config: LoraConfig,
    /// The resolved target module names (never empty).
    pub targets: Vec<String>,
    /// Modules trained in full beside the adapters (a reward model's value head).
    pub modules_to_save: Vec<String>,
    /// The targets are GPT-2 `Conv1D`s (weights `[in, out]`; PEFT's `fan_in_fan_out`).
    pub fan_in_fan_out: bool,
    /// Where the base weights come from (PEFT's `base_model_name_or_path`).
    pub base: Option<String>,
}

impl LoraPlan {
    /// The plan of `config` on `arch`; `head` is the value head of a reward model, if any.
    pub fn new(
        config: &LoraConfig,
        arch: &ArchConfig,
        head: Option<&str>,
        base: Option<String>,
    ) -> Self {
        LoraPlan {
            config: config.clone(),
            targets: config.targets_for(arch),
            modules_to_save: head.map(|h| vec![h.to_string()]).unwrap_or_default(),
            fan_in_fan_out: matches!(arch, ArchConfig::Gpt2(_)),
            base,
        }
    }

    /// Whether the parameter `name` is trained: an adapter, or under a module to save.
    pub fn is_trainable(&self, name: &str) -> bool {
        name.contains(".lora_A.")
            || name.contains(".lora_B.")
            || self
                .modules_to_save
                .iter()
                .any(|m| name.starts_with(&format!("{m}.")))
    }
}

#[derive(Default)]
struct Inner {
    vars: BTreeMap<String, Var>,
    /// With a LoRA plan: the frozen base weights, as plain tensors.
    base: BTreeMap<String, Tensor>,
    lora: Option<LoraPlan>,
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
    /// Models built over this handle get the LoRA plan's adapters (false: [`Self::base_view`]).
    adapters: bool,
}

impl ParamStore {
    /// An empty store: every parameter is initialised from `seed`.
    pub fn new(seed: u64, device: &Device) -> Self {
        ParamStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            seed,
            device: device.clone(),
            frozen: false,
            adapters: true,
        }
    }

    /// Puts adapters on this store's models (before any model is built over it).
    pub fn with_lora(self, plan: LoraPlan) -> Result<Self> {
        plan.config.validate().map_err(ModelError::Unsupported)?;
        {
            let mut inner = self.lock();
            if !inner.vars.is_empty() || !inner.base.is_empty() {
                return Err(ModelError::Unsupported(
                    "LoRA must be planned before a model is built over the store".into(),
                ));
            }
            inner.lora = Some(plan);
        }
        Ok(self)
    }

    /// A new store over this one's weights (shared storage) plus `extra` tensors (e.g. a saved
    /// adapter, by store name), with `plan`: rebuild the model over it to get the adapters.
    pub fn with_lora_over(&self, plan: LoraPlan, extra: HashMap<String, Tensor>) -> Result<Self> {
        let mut tensors = self.merged_tensors()?;
        tensors.extend(extra);
        ParamStore::with_tensors(tensors, self.seed, &self.device)?.with_lora(plan)
    }

    /// The LoRA plan, if any.
    pub fn lora(&self) -> Option<LoraPlan> {
        self.lock().lora.clone()
    }

    /// A frozen view whose models have no adapters: the base model, over the same tensors.
    pub fn base_view(&self) -> Self {
        ParamStore {
            frozen: true,
            adapters: false,
            ..self.clone()
        }
    }

    /// Every weight (base tensors and vars) by name, with the adapters folded in:
    /// `W + (alpha/r)·B·A` (transposed for `Conv1D`s), the `lora_*` tensors left out.
    pub fn merged_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let inner = self.lock();
        let mut out: HashMap<String, Tensor> = inner.base.clone().into_iter().collect();
        for (name, var) in &inner.vars {
            out.insert(name.clone(), var.as_tensor().detach());
        }
        let Some(plan) = &inner.lora else {
            return Ok(out);
        };
        let scale = plan.config.scaling();
        let modules: Vec<String> = out
            .keys()
            .filter_map(|k| k.strip_suffix(".lora_A.weight").map(str::to_string))
            .collect();
        for m in modules {
            let take = |out: &mut HashMap<String, Tensor>, k: String| {
                out.remove(&k)
                    .ok_or_else(|| ModelError::Weights(format!("LoRA merge: no `{k}`")))
            };
            let a = take(&mut out, format!("{m}.lora_A.weight"))?;
            let b = take(&mut out, format!("{m}.lora_B.weight"))?;
            let w = take(&mut out, format!("{m}.weight"))?;
            let mut delta = (b.matmul(&a)? * scale)?;
            if plan.fan_in_fan_out {
                delta = delta.t()?;
            }
            out.insert(format!("{m}.weight"), (w + delta)?);
        }
        Ok(out)
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

    /// Saves the weights a run needs to resume into `dir`: a LoRA store's adapter in PEFT's
    /// layout ([`crate::peft::save_adapter`]), else `model.safetensors`.
    pub fn save_dir(&self, dir: &Path, task: crate::peft::TaskType) -> Result<()> {
        if self.lora().is_some() {
            crate::peft::save_adapter(self, task, dir)
        } else {
            self.save(&dir.join("model.safetensors"))
        }
    }

    /// Reads back what [`Self::save_dir`] wrote (resume).
    pub fn load_dir(&self, dir: &Path) -> Result<()> {
        if self.lora().is_some() {
            crate::peft::load_adapter_values(self, dir)
        } else {
            self.load_values(&dir.join("model.safetensors"))
        }
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
        self.set_values(&loaded, path)
    }

    /// Overwrites every parameter with its tensor in `loaded` (read from `path`, for errors).
    pub fn set_values(&self, loaded: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
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

    /// The LoRA config when `name` is the LoRA spec of a target module of an adapter-carrying
    /// handle.
    fn lora_spec<'a>(&self, inner: &'a Inner, name: &str) -> Option<&'a LoraConfig> {
        let module = name.strip_suffix(LORA_SPEC)?.strip_suffix('.')?;
        let plan = inner.lora.as_ref().filter(|_| self.adapters)?;
        is_target(module, &plan.targets).then_some(&plan.config)
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
        if let Some(t) = inner.base.get(name) {
            return Ok(t.clone());
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
        let tensor = tensor.to_dtype(dtype)?.to_device(dev)?;
        if let Some(plan) = &inner.lora {
            if !plan.is_trainable(name) {
                inner.base.insert(name.to_string(), tensor.clone());
                return Ok(tensor);
            }
        }
        let var = Var::from_tensor(&tensor)?;
        let t = self.hand_out(&var);
        inner.vars.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let inner = self.lock();
        if let Some(c) = self.lora_spec(&inner, name) {
            let spec = [c.r as f64, c.lora_alpha, c.lora_dropout];
            return Tensor::new(&spec[..], dev)?.to_dtype(dtype);
        }
        if let Some(t) = inner.base.get(name) {
            return Ok(t.clone());
        }
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
        if name.ends_with(LORA_SPEC) {
            return self.lora_spec(&inner, name).is_some();
        }
        inner.vars.contains_key(name)
            || inner.base.contains_key(name)
            || ParamStore::resolve(&inner, name).is_some()
    }
}
