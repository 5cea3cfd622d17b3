// Cross-check tokenizer.json with an independent implementation: @lenml/tokenizers (the
// tokenizer part of transformers.js, from npm). Optional: check_tokenizer.py is the check the
// make target runs; this one needs `npm install @lenml/tokenizers` in NODE_MODULES_DIR.
//
// Usage: node check_tokenizer_js.cjs NODE_MODULES_DIR HF_DIR IDS.jsonl
// IDS.jsonl holds {"text": ..., "ids": [...]} lines (SentencePiece's ids, written by
// check_tokenizer.py --dump); exits non-zero on the first mismatch.
"use strict";
const fs = require("fs");
const path = require("path");

const [modDir, hfDir, idsPath] = process.argv.slice(2);
const { TokenizerLoader } = require(path.join(modDir, "@lenml", "tokenizers"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(hfDir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(hfDir, "tokenizer_config.json"), "utf8")),
});

let n = 0;
let tokens = 0;
for (const line of fs.readFileSync(idsPath, "utf8").split("\n")) {
  if (!line) continue;
  const { text, ids, chat } = JSON.parse(line);
  let got;
  if (chat) {
    got = tokenizer.apply_chat_template(chat, { add_generation_prompt: true, tokenize: true });
    got = Array.from(got);
  } else {
    got = tokenizer.encode(text, { add_special_tokens: false });
  }
  if (JSON.stringify(got) !== JSON.stringify(ids)) {
    console.log("MISMATCH on " + JSON.stringify((text || "").slice(0, 80)));
    console.log("  expected " + JSON.stringify(ids.slice(0, 40)));
    console.log("  got      " + JSON.stringify(got.slice(0, 40)));
    process.exit(1);
  }
  n++;
  tokens += ids.length;
}
console.log(`check_tokenizer_js: @lenml/tokenizers == SentencePiece on ${n} inputs (${tokens} tokens)`);
