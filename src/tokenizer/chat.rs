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
