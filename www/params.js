// params.js: the Generate box's settings (the chat's too), read from its fields.
const $ = (id) => document.getElementById(id);

export const seed = () => Math.max(0, Math.floor(Number($('seed').value) || 0));

// Sampling settings for a generation (messages.js 'generate').
export function params() {
  return {
    maxTokens: Math.max(1, Math.floor(Number($('max-tokens').value) || 1)),
    temperature: Math.max(0, Number($('temperature').value) || 0),
    topP: Math.min(1, Math.max(0.01, Number($('top-p').value) || 1)),
    topK: 0,
    seed: seed(),
  };
}
