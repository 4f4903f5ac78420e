//! A reward model: backbone → pooling → scalar value head.

use candle_core::{Device, Module, Tensor};
use serde::{Deserialize, Serialize};

use rewardkit_tokenize::Batch;

use crate::backbone::{ArchConfig, Backbone};
use crate::error::{ModelError, Result};
use crate::keys::Keys;
use crate::nn::{Linear, Mode};
use crate::params::ParamStore;
use crate::recompute::Recompute;

/// Which hidden state the value head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Pooling {
    /// The first token (`[CLS]`).
    Cls,
    /// The mean over real (unmasked) tokens.
    Mean,
    /// The last real token of each row, found from the attention mask (any padding side).
    Last,
    /// BERT's pooler, `tanh(W h[CLS] + b)`, as `BertForSequenceClassification` uses.
    Pooler,
}

impl Pooling {
    /// The usual choice: last token for decoders, CLS for encoders.
    pub fn default_for(config: &ArchConfig) -> Pooling {
        if config.is_decoder() {
            Pooling::Last
        } else {
            Pooling::Cls
        }
    }
}

/// Backbone + pooling + `Linear(hidden, 1)`.
pub struct RewardModel {
    backbone: Backbone,
    head: Linear,
    pooling: Pooling,
    config: ArchConfig,
    store: ParamStore,
}

impl RewardModel {
    /// Builds the model over `store`: weights the store's checkpoint has are loaded (by their HF
    /// names, with or without the base prefix), the rest are initialised from the store's seed.
    /// The value head is initialised N(0, 1/(H+1)) (std 1/√(H+1)) with a zero bias, so rewards
    /// start near 0.
    pub fn new(config: &ArchConfig, pooling: Pooling, store: &ParamStore) -> Result<Self> {
        let vb = store.var_builder();
        let with_pooler = pooling == Pooling::Pooler;
        let backbone = Backbone::new(vb.pp(config.base_prefix()), config, with_pooler)?;
        let h = config.hidden_size();
        let std = 1.0 / ((h + 1) as f64).sqrt();
        let head_vb = vb.pp(config.head_name());
        let head_bias = !config.is_decoder();
        let head = Linear::new(head_vb, h, 1, head_bias, std)?;
        Ok(RewardModel {
            backbone,
            head,
            pooling,
            config: config.clone(),
            store: store.clone(),
        })
    }

    pub fn config(&self) -> &ArchConfig {
        &self.config
    }
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
    pub fn params(&self) -> &ParamStore {
        &self.store
    }
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    /// Rewards `[sequences]` of a batch: one per row of a padded batch, one per sequence of a
    /// packed one ([`rewardkit_tokenize::pack`]), in the order the sequences were given. Any
    /// model takes sequences packed side by side; a shared prefix needs
    /// [`RewardModel::shares_prompt`].
    pub fn forward(&self, batch: &Batch, mode: Mode) -> Result<Tensor> {
        let (ids, type_ids, keys) = self.inputs(batch)?;
        let hidden = self.backbone.forward(&ids, &type_ids, &keys, mode)?;
        self.read_out(&hidden, batch)
    }

    /// Whether [`RewardModel::forward`] takes packed batches whose sequences share a prefix
    /// ([`rewardkit_tokenize::pack_shared_prefix`]): a causal decoder read at the last token.
    pub fn shares_prompt(&self) -> bool {
        self.config.is_decoder() && self.pooling == Pooling::Last
    }

    /// [`RewardModel::forward`] with gradient checkpointing (decoders): the rewards, whose
    /// `backward` gives the gradients of the head and final norm, and the [`Recompute`] tape
    /// whose [`Recompute::backward`] gives those of the blocks and embeddings. The gradients
    /// equal those of `forward(..).backward()` up to rounding; the blocks' activations are not
    /// kept (see [`crate::recompute`]).
    pub fn forward_recompute(&self, batch: &Batch, mode: Mode) -> Result<(Tensor, Recompute<'_>)> {
        let (ids, _, keys) = self.inputs(batch)?;
        let (hidden, tape) = self.backbone.forward_recompute(&ids, &keys, mode)?;
        Ok((self.read_out(&hidden, batch)?, tape))
    }

    /// The pooled states `[rows, hidden]` the value head reads: [`RewardModel::forward`] is
    /// `head(forward_pooled(..))`. For objectives that read the pooled state with heads of their
    /// own (ODIN's length head in `rewardkit-train`).
    pub fn forward_pooled(&self, batch: &Batch, mode: Mode) -> Result<Tensor> {
        let (ids, type_ids, keys) = self.inputs(batch)?;
        let hidden = self.backbone.forward(&ids, &type_ids, &keys, mode)?;
        self.pool(&hidden, batch)
    }

    /// [`RewardModel::forward_pooled`] with gradient checkpointing, as
    /// [`RewardModel::forward_recompute`].
    pub fn forward_pooled_recompute(
        &self,
        batch: &Batch,
        mode: Mode,
    ) -> Result<(Tensor, Recompute<'_>)> {
        let (ids, _, keys) = self.inputs(batch)?;
        let (hidden, tape) = self.backbone.forward_recompute(&ids, &keys, mode)?;
        Ok((self.pool(&hidden, batch)?, tape))
    }

    /// The value head: pooled states `[rows, hidden]` → rewards `[rows]`.
    pub fn head(&self, pooled: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(pooled)?.squeeze(1)?)
    }

    /// The value head's weight `[1, hidden]`.
    pub fn head_weight(&self) -> &Tensor {
        self.head.weight()
    }

    /// The batch's ids and type ids as `[rows, len]` tensors, and the keys each query sees.
    /// A packed batch with a shared prefix needs [`RewardModel::shares_prompt`].
    fn inputs(&self, batch: &Batch) -> Result<(Tensor, Tensor, Keys)> {
        let dev = self.device();
        let shape = (batch.rows, batch.len);
        let mask = Tensor::from_slice(&batch.attention_mask, shape, dev)?;
        let keys = match &batch.packing {
            None => Keys::new(&mask),
            Some(packing) if packing.shares_prefix && !self.shares_prompt() => {
                return Err(ModelError::Unsupported(format!(
                    "a shared prompt needs a causal decoder read at the last token, not {:?} \
                     pooling of {}",
                    self.pooling,
                    self.config.sequence_classification_class()
                )))
            }
            Some(packing) => Keys::packed(&mask, packing)?,
        };
        Ok((
            Tensor::from_slice(&batch.ids, shape, dev)?,
            Tensor::from_slice(&batch.type_ids, shape, dev)?,
            keys,
        ))
    }

    /// Pooling and the value head: hidden states → rewards `[rows]`.
    fn read_out(&self, hidden: &Tensor, batch: &Batch) -> Result<Tensor> {
        self.head(&self.pool(hidden, batch)?)
    }

    fn pool(&self, hidden: &Tensor, batch: &Batch) -> Result<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        if let Some(packing) = &batch.packing {
            return self.pool_packed(&hidden.reshape((b * t, h))?, packing);
        }
        Ok(match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Pooler => {
                let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
                self.backbone.pooler(&cls)?.unwrap_or(cls)
            }
            Pooling::Mean => {
                let mask: Vec<f32> = batch.attention_mask.iter().map(|&m| m as f32).collect();
                let mask = Tensor::from_vec(mask, (b, t, 1), hidden.device())?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Last => {
                let idx: Vec<u32> = (0..b)
                    .map(|r| {
                        let row = &batch.attention_mask[r * t..(r + 1) * t];
                        let last = row.iter().rposition(|&m| m != 0).unwrap_or(0);
                        (r * t + last) as u32
                    })
                    .collect();
                let idx = Tensor::from_vec(idx, b, hidden.device())?;
                hidden.reshape((b * t, h))?.index_select(&idx, 0)?
            }
        })
    }

    /// Pooling of packed sequences from the flat states `[rows · len, hidden]`: at each
    /// sequence's last or first token ([`rewardkit_tokenize::Packing`]), or the mean over its
    /// tokens `first..=last` (sequences side by side only: [`RewardModel::inputs`] refuses a
    /// shared prefix to other than last-token pooling).
    fn pool_packed(&self, flat: &Tensor, packing: &rewardkit_tokenize::Packing) -> Result<Tensor> {
        let dev = flat.device();
        let at = |idx: &[usize]| -> Result<Tensor> {
            let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
            let n = idx.len();
            Ok(flat.index_select(&Tensor::from_vec(idx, n, dev)?, 0)?)
        };
        Ok(match self.pooling {
            Pooling::Last => at(&packing.last)?,
            Pooling::Cls => at(&packing.first)?,
            Pooling::Pooler => {
                let cls = at(&packing.first)?;
                self.backbone.pooler(&cls)?.unwrap_or(cls)
            }
            Pooling::Mean => {
                let (n, positions) = (packing.first.len(), flat.dim(0)?);
                let mut weights = vec![0f32; n * positions];
                for (k, (&first, &last)) in packing.first.iter().zip(&packing.last).enumerate() {
                    let w = 1.0 / (last + 1 - first) as f32;
                    weights[k * positions + first..=k * positions + last].fill(w);
                }
                Tensor::from_vec(weights, (n, positions), dev)?.matmul(flat)?
            }
        })
    }
}
