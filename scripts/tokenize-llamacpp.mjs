// llama.cpp's own tokenization of a list of texts, as a JSON fixture for tests/gguf_tokenizer.rs.
//
//   node scripts/tokenize-llamacpp.mjs --modules DIR MODEL.gguf CASES.json > FIXTURE.json
//
// DIR is a node_modules folder outside this repository holding node-llama-cpp 3.21.1
// (`npm i node-llama-cpp@3.21.1` there; it ships prebuilt CPU binaries of llama.cpp), so
// the project's package.json does not depend on it: the committed fixture is what the
// tests read. CASES.json is {"texts": [...], "chat": {"messages": [{role, content}, ...],
// "add_generation_prompt": bool}}. The output keeps the input and adds, for each text,
// the ids of llama.cpp's tokenize(text, special tokens parsed, no BOS), and the model's
// chat template rendered for the chat by @huggingface/jinja (node-llama-cpp's Jinja
// engine) with that text's ids, so that the fixture checks the tokenizer and the prompt
// formatter.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
const at = argv.indexOf('--modules');
if (at < 0 || argv.length !== 4) {
  console.error('usage: node scripts/tokenize-llamacpp.mjs --modules DIR MODEL.gguf CASES.json > FIXTURE.json');
  process.exit(2);
}
const modules = argv[at + 1];
const [modelPath, casesPath] = argv.filter((_, i) => i !== at && i !== at + 1);

// Resolve the packages from DIR, not from this repository.
const require = createRequire(join(modules, 'resolve-from-here.js'));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { getLlama } = await load('node-llama-cpp');
const { Template } = await load('@huggingface/jinja');

const cases = JSON.parse(readFileSync(casesPath, 'utf8'));
const llama = await getLlama({ gpu: false, build: 'never' });
const model = await llama.loadModel({ modelPath });

const tokens = cases.texts.map((text) => ({ text, ids: Array.from(model.tokenize(text, true)) }));
const template = model.fileInfo.metadata.tokenizer.chat_template;
const chatText = new Template(template).render(cases.chat);
const chat = { ...cases.chat, text: chatText, ids: Array.from(model.tokenize(chatText, true)) };

const fixture = {
  about:
    "llama.cpp's tokenization (node-llama-cpp 3.21.1: tokenize(text, true), no BOS) and the chat template rendered by @huggingface/jinja",
  command: `node scripts/tokenize-llamacpp.mjs --modules DIR ${modelPath} ${casesPath}`,
  model: basename(modelPath),
  tokens,
  chat,
};
// One line per text keeps the fixture short and its diffs readable.
const lines = Object.entries(fixture).map(([key, value]) =>
  Array.isArray(value) ? ` "${key}": [\n${value.map((v) => `  ${JSON.stringify(v)}`).join(',\n')}\n ]` : ` "${key}": ${JSON.stringify(value)}`,
);
console.log(`{\n${lines.join(',\n')}\n}`);
await model.dispose();
await llama.dispose();
