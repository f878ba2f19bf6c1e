//! Chat prompts in ChatML, the format of SmolLM2's (and Qwen's) chat template:
//!
//! ```text
//! <|im_start|>system
//! You are a helpful assistant.<|im_end|>
//! <|im_start|>user
//! Hi!<|im_end|>
//! <|im_start|>assistant
//! ```
//!
//! A GGUF file carries its template as Jinja (`tokenizer.chat_template`); this writes
//! what a ChatML template renders, without a Jinja engine. Some templates add a default
//! system message when the conversation has none (SmolLM2's does): pass it as the first
//! message to get the same text.

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// The ChatML text of `messages`, each `<|im_start|>role\ncontent<|im_end|>\n`; with
/// `add_generation_prompt`, followed by the start of the assistant's reply, which the
/// model then writes.
pub fn chatml_prompt(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut prompt: String =
        messages.iter().map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content)).collect();
    if add_generation_prompt {
        prompt.push_str("<|im_start|>assistant\n");
    }
    prompt
}

/// The system message a ChatML template writes when the conversation has none, if it
/// writes one: the literal text between `<|im_start|>system\n` and `<|im_end|>` in the
/// template (SmolLM2's: "You are a helpful AI assistant named SmolLM, trained by Hugging
/// Face"). Text holding template code (quotes, braces) is not a literal, so None.
pub fn default_system_prompt(template: &str) -> Option<&str> {
    const START: &str = "<|im_start|>system\n";
    let from = template.find(START)? + START.len();
    let text = &template[from..from + template[from..].find("<|im_end|>")?];
    (!text.contains(['\'', '"', '{', '}'])).then_some(text)
}

/// `messages` as the template renders them: its default system message first when the
/// conversation does not start with one (see [`default_system_prompt`]).
pub fn with_default_system(messages: &[ChatMessage], template: &str) -> Vec<ChatMessage> {
    let default = default_system_prompt(template).filter(|_| messages.first().is_some_and(|m| m.role != "system"));
    default.map(|text| ChatMessage::new("system", text)).into_iter().chain(messages.iter().cloned()).collect()
}
