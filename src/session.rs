//! The session API every front end uses (CLI, bench, the page): a base model,
//! the G it is converted to, a backend that runs it, and generation with
//! streaming callbacks and statistics.
//!
//! [`Backend`] is the seam between the session and an engine: the CPU engine
//! implements it here; the GPU engine implements the same trait.

use serde::Serialize;
use web_time::Instant;

use crate::config::{kv_cache_bytes, Config};
use crate::convert::{convert, Method};
use crate::cpu::CpuEngine;
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::{TextStream, Tokenizer};

/// Which logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's: (vocab).
    Last,
    /// Every new token's: (T x vocab), for evaluation.
    All,
}

/// An engine that runs one model with a KV cache.
pub trait Backend {
    fn name(&self) -> String;
    fn model(&self) -> &Model;
    /// Replace the model (e.g. another G); the KV cache is reallocated and cleared.
    fn set_model(&mut self, model: Model) -> Result<()>;
    /// Run new tokens at the current position, appending to the KV cache.
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>>;
    /// Run new tokens and return the greedy next token (argmax of the last logits).
    /// The GPU engine computes it there and reads back only the token.
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        Ok(crate::sampler::argmax(&self.forward(tokens, Logits::Last)?))
    }
    /// Positions in the KV cache.
    fn pos(&self) -> usize;
    /// Positions the KV cache can hold.
    fn capacity(&self) -> usize;
    fn reset(&mut self);
    /// Fill the first `len` positions with random keys/values (benchmarks).
    fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()>;
    /// Bytes the KV cache has allocated.
    fn kv_bytes_allocated(&self) -> usize;
}

impl Backend for CpuEngine {
    fn name(&self) -> String {
        format!("cpu ({})", crate::kernels::simd_name())
    }
    fn model(&self) -> &Model {
        CpuEngine::model(self)
    }
    fn set_model(&mut self, model: Model) -> Result<()> {
        CpuEngine::set_model(self, model)
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        CpuEngine::forward(self, tokens, which)
    }
    fn pos(&self) -> usize {
        CpuEngine::pos(self)
    }
    fn capacity(&self) -> usize {
        self.cache().capacity()
    }
    fn reset(&mut self) {
        CpuEngine::reset(self)
    }
    fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        CpuEngine::fill_synthetic(self, len, seed)
    }
    fn kv_bytes_allocated(&self) -> usize {
        self.cache().bytes()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
}

/// What the last generation did and cost; plain data for the CLI's `--json` and the page.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub backend: String,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub context_used: usize,
    pub context_max: usize,
    /// KV cache bytes at the context used, for this G and for MHA (G = H), f32.
    pub kv_bytes: usize,
    pub kv_bytes_mha: usize,
    pub kv_bytes_allocated: usize,
    pub weight_bytes: usize,
    /// "length", "eos", "context" or "stopped".
    pub stop_reason: String,
}

pub struct Session {
    /// The model as loaded: every conversion starts from it.
    base: Model,
    backend: Box<dyn Backend>,
    tokenizer: Option<Tokenizer>,
    stats: Stats,
    /// The generation in progress, between `start` and its last `next_token`.
    generation: Option<Generation>,
}

/// A generation in progress: the prompt, the sampler, the stop rules and the
/// timers, but no engine. Whoever owns the engine asks [`Generation::action`]
/// what to do next and runs the forward passes it asks for, so the session
/// (blocking backends) and the GPU engine (async, in the browser) follow the
/// same rules.
pub struct Generation {
    prompt: Vec<u32>,
    sampler: Sampler,
    greedy: bool,
    stop_ids: Vec<u32>,
    max_tokens: usize,
    started: Instant,
    /// Seconds the prefill took, once it ran.
    prefill_s: Option<f64>,
    decode_start: Instant,
    generated: usize,
    /// A token sampled but not yet returned.
    pending: Option<u32>,
    /// The last token returned: the input of the next forward pass.
    last: [u32; 1],
}

/// What a generation needs next.
pub enum Action<'a> {
    /// Run these tokens through the model, then give the sampled token to
    /// [`Generation::sampled`] ([`Generation::choose`] samples from logits).
    Forward(&'a [u32]),
    /// The next generated token.
    Token(u32),
    /// The generation has ended: "length", "eos" or "context".
    End(&'static str),
}

impl Generation {
    /// Check the prompt (BOS included by the caller) against the KV capacity and
    /// the sampler settings against their ranges.
    pub fn new(config: &Config, params: &GenerateParams, prompt: &[u32], capacity: usize) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(GqaError::Invalid("the prompt needs at least one token (BOS)".into()));
        }
        if prompt.len() > capacity {
            return Err(GqaError::PromptTooLong { prompt: prompt.len(), context: capacity });
        }
        Ok(Generation {
            prompt: prompt.to_vec(),
            sampler: Sampler::new(params.sampler.clone())?,
            greedy: params.sampler.temperature == 0.0,
            stop_ids: std::iter::once(config.bos_token_id).chain(config.eos_ids()).collect(),
            max_tokens: params.max_tokens,
            started: Instant::now(),
            prefill_s: None,
            decode_start: Instant::now(),
            generated: 0,
            pending: None,
            last: [0],
        })
    }

    /// Greedy decoding needs only the argmax (the GPU reads back one token).
    pub fn greedy(&self) -> bool {
        self.greedy
    }

    /// The next token from a forward pass's logits.
    pub fn choose(&mut self, logits: &[f32]) -> u32 {
        self.sampler.sample(logits)
    }

    /// The stop rules, in order: the prompt first; enough tokens; the end of
    /// sequence; a full context (checked before running the last token).
    /// `pos` and `capacity` are the engine's KV positions used and available.
    pub fn action(&mut self, pos: usize, capacity: usize) -> Action<'_> {
        if self.prefill_s.is_none() {
            return Action::Forward(&self.prompt);
        }
        if self.generated >= self.max_tokens {
            return Action::End("length");
        }
        match self.pending.take() {
            Some(next) if self.stop_ids.contains(&next) => Action::End("eos"),
            Some(next) => {
                self.generated += 1;
                self.last = [next];
                Action::Token(next)
            }
            None if pos >= capacity => Action::End("context"),
            None => Action::Forward(&self.last),
        }
    }

    /// The token sampled after the forward pass that [`Generation::action`] asked for.
    pub fn sampled(&mut self, token: u32) {
        if self.prefill_s.is_none() {
            self.prefill_s = Some(self.started.elapsed().as_secs_f64());
            self.decode_start = Instant::now();
        }
        self.pending = Some(token);
    }

    /// The statistics so far, for an engine now at `pos` of `capacity` positions.
    pub fn stats(&self, backend: String, model: &Model, pos: usize, capacity: usize, kv_bytes_allocated: usize, stop_reason: &str) -> Stats {
        let config = &model.config;
        let prefill_s = self.prefill_s.unwrap_or(0.0);
        let decode_s = self.decode_start.elapsed().as_secs_f64();
        // Decode speed counts the forward passes after the prefill.
        let decode_steps = pos.saturating_sub(self.prompt.len());
        Stats {
            backend,
            n_heads: config.n_heads(),
            n_kv_heads: config.n_kv_heads(),
            prompt_tokens: self.prompt.len(),
            generated_tokens: self.generated,
            prefill_ms: prefill_s * 1e3,
            prefill_tok_s: self.prompt.len() as f64 / prefill_s.max(1e-9),
            decode_tok_s: if decode_steps > 0 { decode_steps as f64 / decode_s.max(1e-9) } else { 0.0 },
            context_used: pos,
            context_max: capacity,
            kv_bytes: kv_cache_bytes(config, config.n_kv_heads(), pos, 4),
            kv_bytes_mha: kv_cache_bytes(config, config.n_heads(), pos, 4),
            kv_bytes_allocated,
            weight_bytes: model.weight_bytes(),
            stop_reason: stop_reason.into(),
        }
    }
}

/// Run the forward pass a generation asked for and give it the chosen token.
fn feed(backend: &mut dyn Backend, g: &mut Generation, tokens: &[u32]) -> Result<()> {
    let next = if g.greedy() {
        backend.forward_argmax(tokens)?
    } else {
        let logits = backend.forward(tokens, Logits::Last)?;
        g.choose(&logits)
    };
    g.sampled(next);
    Ok(())
}

impl Session {
    pub fn new(base: Model, tokenizer: Option<Tokenizer>, backend: Box<dyn Backend>) -> Result<Session> {
        if let Some(tok) = &tokenizer {
            if tok.vocab_size() > base.config.vocab_size {
                return Err(GqaError::VocabMismatch { model: base.config.vocab_size, tokenizer: tok.vocab_size() });
            }
        }
        Ok(Session { base, backend, tokenizer, stats: Stats::default(), generation: None })
    }

    /// A session on the CPU engine with a KV cache of `capacity` positions
    /// (at most the model's context; `None` means the whole context).
    pub fn cpu(base: Model, tokenizer: Option<Tokenizer>, capacity: Option<usize>) -> Result<Session> {
        let capacity = capacity.unwrap_or(base.config.max_position_embeddings);
        let engine = CpuEngine::new(base.clone(), capacity)?;
        Session::new(base, tokenizer, Box::new(engine))
    }

    pub fn base(&self) -> &Model {
        &self.base
    }

    pub fn model(&self) -> &Model {
        self.backend.model()
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Convert the base model to `groups` key/value heads (Algorithm 4) and run that.
    pub fn set_groups(&mut self, groups: usize, method: Method, seed: u64) -> Result<()> {
        let model = convert(&self.base, groups, method, seed)?;
        self.generation = None;
        self.backend.set_model(model)
    }

    /// Start generating from prompt token ids (BOS included by the caller): check
    /// the prompt, reset the cache and run the prefill. Then call [`Session::next_token`]
    /// until it returns `None`; a front end that must stay responsive (the page's Web
    /// Worker) yields between calls, and [`Session::stop`] ends the generation early.
    pub fn start(&mut self, prompt: &[u32], params: &GenerateParams) -> Result<()> {
        self.generation = None;
        let mut g = Generation::new(&self.backend.model().config, params, prompt, self.backend.capacity())?;
        self.backend.reset();
        // The prefill runs here, so its time is measured apart from decoding.
        let prompt = g.prompt.clone();
        let prefill = feed(self.backend.as_mut(), &mut g, &prompt);
        self.generation = Some(g);
        match prefill {
            Ok(()) => {
                self.update_stats("running");
                Ok(())
            }
            Err(e) => {
                self.finish("error");
                Err(e)
            }
        }
    }

    /// The next generated token, or `None` when the generation has ended (length,
    /// end of sequence, full context, stopped; see `stats().stop_reason`).
    pub fn next_token(&mut self) -> Result<Option<u32>> {
        let Some(mut g) = self.generation.take() else { return Ok(None) };
        let result = loop {
            let tokens = match g.action(self.backend.pos(), self.backend.capacity()) {
                Action::Token(id) => break Ok(Ok(id)),
                Action::End(reason) => break Ok(Err(reason)),
                Action::Forward(tokens) => tokens.to_vec(),
            };
            if let Err(e) = feed(self.backend.as_mut(), &mut g, &tokens) {
                break Err(e);
            }
        };
        self.generation = Some(g);
        match result {
            Ok(Ok(id)) => {
                self.update_stats("running");
                Ok(Some(id))
            }
            Ok(Err(reason)) => Ok(self.finish(reason)),
            Err(e) => {
                self.finish("error");
                Err(e)
            }
        }
    }

    /// End the generation in progress (its statistics say "stopped").
    pub fn stop(&mut self) {
        if self.generation.is_some() {
            self.finish("stopped");
        }
    }

    /// Whether a generation is in progress.
    pub fn is_generating(&self) -> bool {
        self.generation.is_some()
    }

    fn finish(&mut self, stop_reason: &str) -> Option<u32> {
        self.update_stats(stop_reason);
        self.generation = None;
        None
    }

    fn update_stats(&mut self, stop_reason: &str) {
        let Some(g) = &self.generation else { return };
        let b = &self.backend;
        self.stats = g.stats(b.name(), b.model(), b.pos(), b.capacity(), b.kv_bytes_allocated(), stop_reason);
    }

    /// Generate from prompt token ids (BOS included by the caller). `on_token`
    /// sees each new id and returns false to stop. Returns the generated ids.
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        self.start(prompt, params)?;
        let mut generated = Vec::new();
        while let Some(id) = self.next_token()? {
            generated.push(id);
            if !on_token(id) {
                self.stop();
            }
        }
        Ok(generated)
    }

    /// BOS + the encoded prompt.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.base.config.bos_token_id];
        ids.extend(self.require_tokenizer()?.encode(prompt)?);
        Ok(ids)
    }

    /// A decoder that turns the ids generated after `prompt_ids` into text as they stream.
    pub fn text_stream(&self, prompt_ids: &[u32]) -> Result<TextStream> {
        self.require_tokenizer()?.stream_after(prompt_ids)
    }

    fn require_tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| GqaError::Invalid("this session has no tokenizer".into()))
    }

    /// Generate text: BOS + the encoded prompt, then up to `max_tokens` tokens.
    /// `on_text` receives the text as it streams and returns false to stop.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<String> {
        let ids = self.prompt_ids(prompt)?;
        let mut stream = self.text_stream(&ids)?;
        let mut text = String::new();
        let mut stream_error = None;
        self.generate_ids(&ids, params, &mut |id| match stream.push(id) {
            Ok(piece) => {
                text.push_str(&piece);
                piece.is_empty() || on_text(&piece)
            }
            Err(e) => {
                stream_error = Some(e);
                false
            }
        })?;
        if let Some(e) = stream_error {
            return Err(e);
        }
        let rest = stream.finish()?;
        if !rest.is_empty() {
            on_text(&rest);
            text.push_str(&rest);
        }
        Ok(text)
    }
}
