//! Sampling from a causal language model: the policy of best-of-n experiments.
//!
//! A [`Policy`] is a Llama-family decoder with its LM head, its tokenizer, EOS token and chat
//! template, read from one GGUF file. [`Policy::generate`] draws `n` responses per prompt with
//! temperature and nucleus (top-p) sampling over a KV cache ([`Llama::forward_cached`]),
//! `batch_size` sequences at a time (left-padded). Every sample has its own random stream,
//! derived from `(seed, prompt index, sample index)`, so the samples do not depend on the batch
//! size or on which other prompts are generated. Each sample records two log-probabilities of
//! its tokens: under the distribution it was drawn from (after temperature and top-p) and under
//! the plain model (temperature 1), the second being what a KL penalty against a reference model
//! ([`Policy::sequence_logprob`]) compares.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use rewardkit_data::Rng;

use crate::backbone::ArchConfig;
use crate::causal_lm::CausalLm;
use crate::error::ModelError;
use crate::gguf::GgufFile;
use crate::nn::Mode;
use crate::params::ParamStore;

/// Errors of generation and scoring.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{}: {message}", path.display())]
    Load {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("chat template: {0}")]
    Template(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid generation settings: {0}")]
    Config(String),
    #[error("the prompt {0:?} has no tokens")]
    EmptyPrompt(String),
}

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// New tokens per sample at most (EOS included).
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling: draw from the smallest set of most likely tokens whose probability
    /// reaches `top_p` (1 = the whole vocabulary).
    pub top_p: f64,
    /// Seed of the per-sample random streams.
    pub seed: u64,
    /// Sequences per forward pass.
    pub batch_size: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 64,
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
            batch_size: 8,
        }
    }
}

impl GenerationConfig {
    fn validate(&self) -> Result<(), GenerateError> {
        let bad = |m: String| Err(GenerateError::Config(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature {} (must be ≥ 0)", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} (must be in (0, 1])", self.top_p));
        }
        if self.batch_size == 0 {
            return bad("batch_size 0".into());
        }
        Ok(())
    }
}

/// One generated response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub prompt_index: usize,
    pub sample_index: usize,
    /// The decoded response, without the EOS token.
    pub text: String,
    /// The generated token ids, EOS included when `finished`.
    pub token_ids: Vec<u32>,
    /// Σ log p of the generated tokens under the distribution they were drawn from (after
    /// temperature and top-p renormalisation); 0 for greedy decoding, which is deterministic.
    pub logprob: f64,
    /// Σ log p of the same tokens under the model at temperature 1.
    pub logprob_model: f64,
    /// The response ended with EOS (rather than at `max_new_tokens`).
    pub finished: bool,
}

/// The chat formats this module renders. A template is recognised by its markers; one of an
/// unknown kind is an error, not a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// ChatML (`<|im_start|>{role}\n{content}<|im_end|>\n`), with the system turn the template
    /// writes itself when the conversation has none (SmolLM2's, Qwen2's).
    ChatMl { default_system: Option<String> },
}

impl ChatTemplate {
    /// Recognises a Jinja chat template.
    pub fn detect(template: &str) -> Result<Self, GenerateError> {
        let chatml = ["<|im_start|>", "<|im_end|>", "<|im_start|>assistant"]
            .iter()
            .all(|m| template.contains(m))
            && (template.contains("message['role']") || template.contains("message.role"));
        if !chatml {
            let head: String = template.chars().take(120).collect();
            return Err(GenerateError::Template(format!(
                "not a known kind (only ChatML is rendered): {head:?}…"
            )));
        }
        Ok(ChatTemplate::ChatMl {
            default_system: default_system(template),
        })
    }

    /// The prompt for one user message, ready for the assistant's reply (the template with
    /// `add_generation_prompt`).
    pub fn render_user(&self, text: &str) -> String {
        match self {
            ChatTemplate::ChatMl { default_system } => {
                let system = default_system
                    .as_ref()
                    .map(|s| format!("<|im_start|>system\n{s}<|im_end|>\n"))
                    .unwrap_or_default();
                format!("{system}<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")
            }
        }
    }
}

/// The system message a ChatML template writes as a literal, `<|im_start|>system\n…<|im_end|>`
/// with no template expression inside (a newline written raw or as `\n`).
fn default_system(template: &str) -> Option<String> {
    let marker = "<|im_start|>system";
    let mut rest = template;
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let body = rest.strip_prefix('\n').or_else(|| rest.strip_prefix("\\n"));
        if let Some((text, _)) = body.and_then(|b| b.split_once("<|im_end|>")) {
            if !text.is_empty() && !text.contains(['\'', '"', '{', '}', '+']) {
                return Some(text.to_string());
            }
        }
    }
    None
}

/// A decoder that samples and trains: its weights (a trainable [`ParamStore`]), the model built
/// over their frozen view for sampling and scoring, tokenizer, EOS ids and chat template.
/// [`Policy::trainable`] builds the same model over the trainable weights (for SFT and RL);
/// what training changes, sampling sees. Constructors: [`Policy::from_gguf`],
/// [`Policy::from_dir`], [`Policy::from_scratch`], [`Policy::load`] (either file kind).
pub struct Policy {
    pub(crate) model: CausalLm,
    pub(crate) store: ParamStore,
    pub(crate) config: ArchConfig,
    pub(crate) tokenizer: tokenizers::Tokenizer,
    pub(crate) eos_ids: Vec<u32>,
    pub(crate) template: Option<ChatTemplate>,
    pub(crate) device: Device,
}

impl Policy {
    /// A policy from a GGUF file: weights dequantised to f32, tokenizer, EOS and chat template
    /// from the metadata. A file with no chat template gives a policy whose
    /// [`Policy::format_prompt`] is an error; one of an unknown kind is an error here.
    pub fn from_gguf(path: &Path) -> Result<Self, GenerateError> {
        let device = Device::Cpu;
        crate::ops::simd_level()?;
        let file = GgufFile::open(path)?;
        let err = |message: String| GenerateError::Load {
            path: path.to_path_buf(),
            message,
        };
        let config = file.arch_config()?;
        if !matches!(config, ArchConfig::Llama(_)) {
            return Err(err("not a Llama-family decoder".into()));
        }
        let store = file.param_store(0, &device)?;
        let tok = file.tokenizer()?;
        let eos = tok
            .eos_token
            .as_deref()
            .ok_or_else(|| err("no EOS token in the metadata".into()))?;
        let eos_id = tok
            .tokenizer
            .token_to_id(eos)
            .ok_or_else(|| err(format!("EOS token {eos:?} is not in the vocabulary")))?;
        let template = tok
            .chat_template
            .as_deref()
            .map(ChatTemplate::detect)
            .transpose()?;
        let policy = Policy::new(&config, store, tok.tokenizer, vec![eos_id], template)?;
        let missing = policy.store.initialised();
        if !missing.is_empty() {
            return Err(err(format!("weights missing from the file: {missing:?}")));
        }
        policy.store.release_source();
        Ok(policy)
    }

    /// The decoder (over the frozen view of the weights: no autograd graph).
    pub fn model(&self) -> &CausalLm {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// The token ids that end a response.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The chat format, when the file has a template.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// A single-turn prompt in the model's chat format, ready for the assistant's reply.
    pub fn format_prompt(&self, user_text: &str) -> Result<String, GenerateError> {
        let template = self
            .template
            .as_ref()
            .ok_or_else(|| GenerateError::Template("the model has no chat template".into()))?;
        Ok(template.render_user(user_text))
    }

    /// The token ids of `text` as the model reads it: special tokens in the text matched whole,
    /// nothing added around it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, GenerateError> {
        // Special tokens in the text (`<|im_start|>` …) are matched whole; nothing is added
        // around it (a chat template writes its own BOS where it wants one).
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| GenerateError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `n_per_prompt` responses to each prompt (the model's input text as is: pass
    /// [`Policy::format_prompt`]'s output for a chat model), ordered by prompt then sample.
    /// `progress` is called after each batch with the number of samples done so far.
    pub fn generate(
        &self,
        prompts: &[String],
        n_per_prompt: usize,
        config: &GenerationConfig,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Sample>, GenerateError> {
        let encoded = prompts
            .iter()
            .map(|p| match self.encode(p)? {
                ids if ids.is_empty() => Err(GenerateError::EmptyPrompt(p.clone())),
                ids => Ok(ids),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.generate_ids(&encoded, n_per_prompt, config, progress)
    }

    /// [`Policy::generate`] from prompts already tokenised (each at least one token).
    pub fn generate_ids(
        &self,
        encoded: &[Vec<u32>],
        n_per_prompt: usize,
        config: &GenerationConfig,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Sample>, GenerateError> {
        config.validate()?;
        if let Some(i) = encoded.iter().position(Vec::is_empty) {
            return Err(GenerateError::EmptyPrompt(format!("prompt {i}")));
        }
        let prompts = encoded;
        let jobs: Vec<(usize, usize)> = (0..prompts.len())
            .flat_map(|p| (0..n_per_prompt).map(move |s| (p, s)))
            .collect();
        let mut samples = Vec::with_capacity(jobs.len());
        for batch in jobs.chunks(config.batch_size) {
            samples.extend(self.generate_batch(encoded, batch, config)?);
            progress(samples.len());
        }
        Ok(samples)
    }

    fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        jobs: &[(usize, usize)],
        config: &GenerationConfig,
    ) -> Result<Vec<Sample>, GenerateError> {
        // Each distinct prompt of the batch runs once; its cache is then copied to its samples.
        let mut distinct: Vec<usize> = Vec::new();
        let row_of: Vec<usize> = jobs
            .iter()
            .map(|&(p, _)| match distinct.iter().position(|&d| d == p) {
                Some(i) => i,
                None => {
                    distinct.push(p);
                    distinct.len() - 1
                }
            })
            .collect();
        let b = jobs.len();
        let width = distinct
            .iter()
            .map(|&p| prompts[p].len())
            .max()
            .unwrap_or(0);
        let pad = self.eos_ids[0];
        let rows = distinct.len();
        let (mut ids, mut mask) = (
            Vec::with_capacity(rows * width),
            Vec::with_capacity(rows * width),
        );
        for &p in &distinct {
            let n = prompts[p].len();
            ids.extend(std::iter::repeat_n(pad, width - n).chain(prompts[p].iter().copied()));
            mask.extend(std::iter::repeat_n(0u32, width - n).chain(std::iter::repeat_n(1, n)));
        }
        let mut rngs: Vec<Rng> = jobs
            .iter()
            .map(|&(p, s)| Rng::derive(config.seed, &["generate", &p.to_string(), &s.to_string()]))
            .collect();
        let mut samples: Vec<Sample> = jobs
            .iter()
            .map(|&(prompt_index, sample_index)| Sample {
                prompt_index,
                sample_index,
                text: String::new(),
                token_ids: Vec::new(),
                logprob: 0.0,
                logprob_model: 0.0,
                finished: false,
            })
            .collect();

        let mut cache = self.model.new_cache();
        let prefill = self.model.forward_cached(
            &Tensor::from_vec(ids, (rows, width), &self.device)?,
            &Tensor::from_vec(mask, (rows, width), &self.device)?,
            &mut cache,
        )?;
        let mut cache = cache.select_rows(&row_of)?;
        let prompt_logits = self.last_logits(&prefill)?;
        let mut logits: Vec<Vec<f32>> = row_of.iter().map(|&r| prompt_logits[r].clone()).collect();
        for step in 0..config.max_new_tokens {
            let mut next = Vec::with_capacity(b);
            for ((sample, rng), row) in samples.iter_mut().zip(&mut rngs).zip(&logits) {
                if sample.finished {
                    next.push(pad);
                    continue;
                }
                let (token, logprob) = pick(row, config, rng);
                sample.token_ids.push(token);
                sample.logprob += logprob;
                sample.logprob_model += row[token as usize] as f64 - log_sum_exp(row, 1.0);
                sample.finished = self.eos_ids.contains(&token);
                next.push(token);
            }
            if step + 1 == config.max_new_tokens || samples.iter().all(|s| s.finished) {
                break;
            }
            let hidden = self.model.forward_cached(
                &Tensor::from_vec(next, (b, 1), &self.device)?,
                &Tensor::ones((b, 1), DType::U32, &self.device)?,
                &mut cache,
            )?;
            logits = self.last_logits(&hidden)?;
        }
        for s in &mut samples {
            let body = match s.finished {
                true => &s.token_ids[..s.token_ids.len() - 1],
                false => &s.token_ids[..],
            };
            s.text = self
                .tokenizer
                .decode(body, false)
                .map_err(|e| GenerateError::Tokenizer(e.to_string()))?;
        }
        Ok(samples)
    }

    /// The next-token logits after the last position of each row of `hidden` `[b, t, hidden]`.
    fn last_logits(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>, GenerateError> {
        let t = hidden.dim(1)?;
        Ok(self
            .model
            .logits(&hidden.narrow(1, t - 1, 1)?.squeeze(1)?)?
            .to_vec2()?)
    }

    /// Teacher-forced Σ log p (temperature 1) of `response`'s tokens, followed by EOS when
    /// `finished`, after `prompt` (the model's input text as is, like [`Policy::generate`]'s).
    /// The response is tokenised afresh, so for a [`Sample`] this equals its `logprob_model`
    /// only when its tokens are the tokenizer's own encoding of its text: sampling picks another
    /// segmentation of the same text now and then (or cuts a character's bytes at the end).
    /// With the policy's tokenizer, [`Policy::sequence_logprob_ids`] scores the very tokens.
    pub fn sequence_logprob(
        &self,
        prompt: &str,
        response: &str,
        finished: bool,
    ) -> Result<f64, GenerateError> {
        let mut ids = self.encode(response)?;
        if finished {
            ids.push(self.eos_ids[0]);
        }
        self.sequence_logprob_ids(prompt, &ids)
    }

    /// Teacher-forced Σ log p (temperature 1) of the tokens `response` after `prompt` (text as
    /// is). For a [`Sample`] of a model with the same vocabulary, `response` is its `token_ids`.
    pub fn sequence_logprob_ids(
        &self,
        prompt: &str,
        response: &[u32],
    ) -> Result<f64, GenerateError> {
        let mut ids = self.encode(prompt)?;
        if ids.is_empty() {
            return Err(GenerateError::EmptyPrompt(prompt.into()));
        }
        let (p, n) = (ids.len(), ids.len() + response.len());
        if n == p {
            return Ok(0.0);
        }
        ids.extend_from_slice(response);
        let input = Tensor::from_slice(&ids[..n - 1], (1, n - 1), &self.device)?;
        let mask = Tensor::ones((1, n - 1), DType::U32, &self.device)?;
        let hidden = self.model.forward(&input, &mask, Mode::Eval)?;
        let logits: Vec<Vec<f32>> = self
            .model
            .logits(&hidden.squeeze(0)?.narrow(0, p - 1, n - p)?)?
            .to_vec2()?;
        Ok(logits
            .iter()
            .zip(&ids[p..])
            .map(|(row, &t)| row[t as usize] as f64 - log_sum_exp(row, 1.0))
            .sum())
    }
}

/// `log Σ exp(x / temperature)`, in f64.
fn log_sum_exp(x: &[f32], temperature: f64) -> f64 {
    let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64)) / temperature;
    max + x
        .iter()
        .map(|&v| (v as f64 / temperature - max).exp())
        .sum::<f64>()
        .ln()
}

/// The next token from one row of logits and its log-probability under the distribution it was
/// drawn from: greedy (the first of the largest logits, log p = 0) at temperature 0, else
/// softmax(logits / temperature) cut to the top-p nucleus and renormalised.
fn pick(logits: &[f32], config: &GenerationConfig, rng: &mut Rng) -> (u32, f64) {
    let argmax = |x: &[f32]| {
        x.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            })
            .0
    };
    if config.temperature == 0.0 {
        return (argmax(logits) as u32, 0.0);
    }
    let t = config.temperature;
    let lse = log_sum_exp(logits, t);
    let probs: Vec<f64> = logits.iter().map(|&v| (v as f64 / t - lse).exp()).collect();
    // Most likely first; ties keep the lower id first, as greedy does.
    let mut order: Vec<usize> = (0..probs.len()).collect();
    if config.top_p < 1.0 {
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let mut mass = 0.0;
        let mut keep = 0;
        while keep < order.len() {
            mass += probs[order[keep]];
            keep += 1;
            if mass >= config.top_p {
                break;
            }
        }
        order.truncate(keep);
    }
    let total: f64 = order.iter().map(|&i| probs[i]).sum();
    let u = rng.uniform() * total;
    let mut acc = 0.0;
    let mut chosen = order[order.len() - 1];
    for &i in &order {
        acc += probs[i];
        if u < acc {
            chosen = i;
            break;
        }
    }
    (chosen as u32, (probs[chosen] / total).ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_templates_are_recognised_with_their_default_system_turn() {
        // SmolLM2-135M-Instruct's `tokenizer.chat_template`, as in its GGUF.
        let smollm2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != \
            'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, \
            trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + \
            message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}\
            {% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let t = ChatTemplate::detect(smollm2).unwrap();
        // What transformers' `apply_chat_template([{"role": "user", "content": "Hi"}],
        // add_generation_prompt=True, tokenize=False)` renders with this template.
        assert_eq!(
            t.render_user("Hi"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
             Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        // Plain ChatML, newlines written as escapes, no system turn of its own.
        let plain = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
            message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt \
            %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        assert_eq!(
            ChatTemplate::detect(plain).unwrap().render_user("Hi"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        // Llama 3's format is not guessed at.
        let llama3 = "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + \
            '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}";
        assert!(matches!(
            ChatTemplate::detect(llama3),
            Err(GenerateError::Template(_))
        ));
    }

    #[test]
    fn sampling_respects_temperature_and_top_p() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let config = |temperature, top_p| GenerationConfig {
            temperature,
            top_p,
            ..Default::default()
        };
        let mut rng = Rng::new(1);
        // Greedy takes the first of the tied maxima, with log p 0; so does a tiny nucleus.
        assert_eq!(pick(&logits, &config(0.0, 1.0), &mut rng), (1, 0.0));
        assert_eq!(pick(&logits, &config(1.0, 1e-6), &mut rng), (1, 0.0));
        // A nucleus of the two tied maxima: each drawn with probability 1/2.
        let mut counts = [0usize; 4];
        for _ in 0..2000 {
            let (t, lp) = pick(&logits, &config(1.0, 0.5), &mut rng);
            assert!((lp - 0.5f64.ln()).abs() < 1e-12);
            counts[t as usize] += 1;
        }
        assert_eq!(counts[0] + counts[2], 0);
        assert!((900..1100).contains(&counts[1]), "{counts:?}");
        // The full softmax at temperature 2: log p = x/2 − logsumexp(x/2).
        let (t, lp) = pick(&logits, &config(2.0, 1.0), &mut rng);
        let want = logits[t as usize] as f64 / 2.0
            - logits
                .iter()
                .map(|&x| (x as f64 / 2.0).exp())
                .sum::<f64>()
                .ln();
        assert!((lp - want).abs() < 1e-12);
    }
}
