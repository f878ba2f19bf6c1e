//! The session API every front end uses (CLI, bench, the page): a base model,
//! the G it is converted to, the engine that runs it, and generation with
//! streaming callbacks and statistics.

#[cfg(not(target_arch = "wasm32"))]
use crate::backend::{BackendKind, EngineOptions};
use crate::backend::engine::Engine;
use crate::backend::Backend;
use crate::config::default_capacity;
use crate::convert::{convert, Method};
use crate::cpu::CpuEngine;
use crate::error::{GqaError, Result};
use crate::generation::{Action, GenerateParams, Generation, Stats};
use crate::model::Model;
use crate::tokenizer::chat::{chatml_prompt, with_default_system, ChatMessage};
use crate::tokenizer::{TextStream, Tokenizer};

pub struct Session {
    /// The model as loaded: every conversion starts from it.
    base: Model,
    engine: Engine,
    tokenizer: Option<Tokenizer>,
    stats: Stats,
    /// The generation in progress, between `start` and its last `next_token`.
    generation: Option<Generation>,
}

/// Run the forward pass a generation asked for and give it the chosen token.
fn feed(backend: &mut dyn Backend, g: &mut Generation, tokens: &[u32]) -> Result<()> {
    let next = g.forward_next(backend, tokens)?;
    g.sampled(next);
    Ok(())
}

impl Session {
    pub fn new(base: Model, tokenizer: Option<Tokenizer>, engine: impl Into<Engine>) -> Result<Session> {
        if let Some(tok) = &tokenizer {
            if tok.vocab_size() > base.config.vocab_size {
                return Err(GqaError::VocabMismatch { model: base.config.vocab_size, tokenizer: tok.vocab_size() });
            }
        }
        Ok(Session { base, engine: engine.into(), tokenizer, stats: Stats::default(), generation: None })
    }

    /// A session on the CPU engine with a KV cache of `capacity` positions
    /// (at most the model's context; `None` means min(context, 4096)).
    pub fn cpu(base: Model, tokenizer: Option<Tokenizer>, capacity: Option<usize>) -> Result<Session> {
        let capacity = capacity.unwrap_or_else(|| default_capacity(&base.config));
        let engine = CpuEngine::new(base.clone(), capacity)?;
        Session::new(base, tokenizer, engine)
    }

    /// A session on `kind` (see [`Engine::open`]); the string says why it fell back to the CPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(
        kind: BackendKind,
        base: Model,
        tokenizer: Option<Tokenizer>,
        capacity: Option<usize>,
        options: EngineOptions,
    ) -> Result<(Session, Option<String>)> {
        let capacity = capacity.unwrap_or_else(|| default_capacity(&base.config));
        let opened = Engine::open(kind, base.clone(), capacity, options)?;
        Ok((Session::new(base, tokenizer, opened.engine)?, opened.fallback))
    }

    /// Run on another engine from now on (it must run this session's current
    /// model); a generation in progress ends.
    pub fn set_engine(&mut self, engine: impl Into<Engine>) {
        self.generation = None;
        self.engine = engine.into();
    }

    pub fn base(&self) -> &Model {
        &self.base
    }

    pub fn model(&self) -> &Model {
        self.engine.model()
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        &mut self.engine
    }

    /// The engine itself, for a front end that drives one engine's own methods (the
    /// page: the GPU engine's async ones).
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
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
        self.engine.set_model(model)
    }

    /// Start generating from prompt token ids (BOS included by the caller): check
    /// the prompt, reset the cache and run the prefill. Then call [`Session::next_token`]
    /// until it returns `None`; a front end that must stay responsive (the page's Web
    /// Worker) yields between calls, and [`Session::stop`] ends the generation early.
    pub fn start(&mut self, prompt: &[u32], params: &GenerateParams) -> Result<()> {
        self.generation = None;
        let mut g = Generation::new(&self.engine.model().config, params, prompt, self.engine.capacity())?;
        self.engine.reset();
        // The prefill runs here, so its time is measured apart from decoding.
        let prompt = g.prompt().to_vec();
        let prefill = feed(&mut self.engine, &mut g, &prompt);
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
            let tokens = match g.action(self.engine.pos(), self.engine.capacity()) {
                Action::Token(id) => break Ok(Ok(id)),
                Action::End(reason) => break Ok(Err(reason)),
                Action::Forward(tokens) => tokens.to_vec(),
            };
            if let Err(e) = feed(&mut self.engine, &mut g, &tokens) {
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
        self.stats = g.stats(&self.engine, stop_reason);
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

    /// BOS (where the tokenizer adds it) + the encoded prompt.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let tokenizer = self.require_tokenizer()?;
        let bos = tokenizer.add_bos().then_some(self.base.config.bos_token_id);
        Ok(bos.into_iter().chain(tokenizer.encode(prompt)?).collect())
    }

    /// The ids of a chat in the model's template (ChatML, with the template's default
    /// system message where the chat has none), ending with the assistant's turn
    /// opened, so that generation writes the reply (and stops at `<|im_end|>`).
    pub fn chat_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let tokenizer = self.require_tokenizer()?;
        let template = tokenizer.chat_template().filter(|_| tokenizer.is_chatml());
        let template = template.ok_or_else(|| GqaError::Invalid("this model has no ChatML chat template; give it plain text to continue instead".into()))?;
        self.prompt_ids(&chatml_prompt(&with_default_system(messages, template), true))
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
        self.generate_text(&ids, params, on_text)
    }

    /// The assistant's reply to a chat (see [`Session::chat_ids`]), streamed to
    /// `on_text` as in [`Session::generate`]; it ends at `<|im_end|>`.
    pub fn chat(&mut self, messages: &[ChatMessage], params: &GenerateParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<String> {
        let ids = self.chat_ids(messages)?;
        self.generate_text(&ids, params, on_text)
    }

    /// Generate from prompt ids, streaming the new text to `on_text`.
    fn generate_text(&mut self, ids: &[u32], params: &GenerateParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<String> {
        let mut stream = self.text_stream(ids)?;
        let mut text = String::new();
        let mut stream_error = None;
        self.generate_ids(ids, params, &mut |id| match stream.push(id) {
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
