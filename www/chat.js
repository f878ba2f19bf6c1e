// chat.js: the chat view, for models with a chat template (SmolLM2): the conversation as
// bubbles, the reply streaming into the last one, an editable system prompt, New chat.
// The conversation outlives a change of G: the next reply takes the whole history, in the
// model's chat template, as its prompt (the engine renders it; see messages.js 'generate').
// app.js sends the requests; this module keeps the conversation and draws it.
import { state } from './state.js';

const $ = (id) => document.getElementById(id);

// The conversation so far, [{role: 'user' | 'assistant', content}], and the reply being
// written: {bubble, text, g} (null between replies).
export const chat = { messages: [], reply: null };
// For the end-to-end test and the curious.
window.gqaChat = chat;

const groupName = (g, h) => (g === h ? `MHA (G = ${g})` : g === 1 ? 'MQA (G = 1)' : `GQA-${g}`);

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = `bubble ${role}`;
  div.dataset.role = role;
  const body = document.createElement('div');
  body.className = 'bubble-text';
  body.textContent = text;
  div.append(body);
  $('chat-log').append(div);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
  return div;
}

// Show the chat view (a chat model is loaded) or the text view. defaultSystem: the system
// prompt the model's template writes when none is given, shown as the field's placeholder.
export function showChatView(on, defaultSystem = '') {
  $('chat').hidden = !on;
  $('output').hidden = on;
  $('text-mode').hidden = on;
  $('generate').hidden = on;
  $('stop').hidden = on; // the chat has its own
  $('chat-system').placeholder = defaultSystem
    ? `empty: the template's default, "${defaultSystem}"`
    : "empty: the template's default";
}

// Start over: no turns (the system prompt stays as written).
export function newChat() {
  chat.messages = [];
  chat.reply = null;
  $('chat-log').replaceChildren();
  $('chat-note').textContent = '';
}

// The user's message `text` joins the conversation and an empty reply bubble opens.
// Returns the prompt of the reply: the system prompt, when one is written (else the
// template adds its default), and the whole conversation.
export function ask(text) {
  chat.messages.push({ role: 'user', content: text });
  bubble('user', text);
  const b = bubble('assistant', '');
  b.classList.add('streaming');
  chat.reply = { bubble: b, text: '', g: state.info.nKvHeads };
  const system = $('chat-system').value.trim();
  return [...(system ? [{ role: 'system', content: system }] : []), ...chat.messages];
}

// What compare asks every G (the conversation's last question, else a fixed one), as a chat
// with the system prompt as written.
export function lastQuestion() {
  const asked = chat.messages.filter((m) => m.role === 'user').at(-1)?.content ?? 'What is the capital of France?';
  const system = $('chat-system').value.trim();
  return [...(system ? [{ role: 'system', content: system }] : []), { role: 'user', content: asked }];
}

// A streamed piece of the reply.
export function appendReply(piece) {
  const r = chat.reply;
  if (!r) return;
  r.text += piece;
  r.bubble.firstChild.textContent = r.text;
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
}

// The reply ended (its end token, max tokens, Stop, a lost GPU): it joins the conversation,
// with a line saying which G wrote it and how fast.
export function finishReply(text, stats) {
  const r = chat.reply;
  if (!r) return;
  chat.reply = null;
  const reply = text.trim();
  r.bubble.classList.remove('streaming');
  r.bubble.firstChild.textContent = reply || '(no text: the model ended its turn at once)';
  chat.messages.push({ role: 'assistant', content: reply });
  const { nHeads } = state.info;
  const parts = [groupName(r.g, nHeads)];
  if (stats) {
    parts.push(`${stats.generated_tokens} tokens, ${stats.decode_tok_s.toFixed(1)} tok/s`);
    if (stats.stop_reason === 'stopped') parts.push('stopped');
    if (stats.stop_reason === 'length') parts.push('cut at max tokens');
    if (stats.stop_reason === 'context') parts.push('the KV cache is full: press New chat');
  }
  const meta = document.createElement('div');
  meta.className = 'bubble-meta';
  meta.textContent = parts.join(' · ');
  r.bubble.append(meta);
  r.bubble.dataset.g = r.g;
  $('chat-note').textContent = `${chat.messages.length / 2} turn${chat.messages.length > 2 ? 's' : ''}; the next reply reads the whole conversation ` +
    `(${stats ? `${stats.context_used} positions of the KV cache now` : 'its text'}), at whatever G is chosen then.`;
}

// The reply failed (an error, not Stop): its bubble and the question go, the question back
// into the input to ask again.
export function failReply() {
  const r = chat.reply;
  if (!r) return;
  chat.reply = null;
  r.bubble.previousSibling?.remove();
  r.bubble.remove();
  const question = chat.messages.pop();
  if (question && !$('chat-input').value) $('chat-input').value = question.content;
}
