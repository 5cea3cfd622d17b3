// reference.js — token ids from the JavaScript reference tokenizer (@lenml/tokenizers, a port of
// the Hugging Face tokenizers pipeline, installed in tests/js with the Llama-2 and Qwen3
// tokenizer files).
//
// usage: node tests/tokenizer/reference.js HF_DIR CORPUS.jsonl
// Loads HF_DIR/tokenizer.json and HF_DIR/tokenizer_config.json. For each corpus line (a JSON
// string) prints {"ids": encode(line) with the model's special tokens added, "text": the text
// decode(encode(line)) must give back} — the line itself, or its NFC form for tokenizers that
// normalize to NFC.
'use strict';
const fs = require('fs');
const path = require('path');

const [dir, corpus] = process.argv.slice(2);
if (!dir || !corpus) {
    console.error('usage: node reference.js HF_DIR CORPUS.jsonl');
    process.exit(2);
}
const { TokenizerLoader } = require(path.join(__dirname, '..', 'js', 'node_modules', '@lenml', 'tokenizers'));
const read = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
const tokenizerJSON = read('tokenizer.json');
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig: read('tokenizer_config.json') });
const nfc = JSON.stringify(tokenizerJSON.normalizer || {}).includes('"NFC"');
const out = [];
for (const line of fs.readFileSync(corpus, 'utf8').split('\n')) {
    if (line === '') continue;
    const s = JSON.parse(line);
    out.push(JSON.stringify({ ids: tok.encode(s), text: nfc ? s.normalize('NFC') : s }));
}
process.stdout.write(out.join('\n') + '\n');
