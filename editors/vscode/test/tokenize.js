#!/usr/bin/env node
// Tokenizes .offer files with the extension's TextMate grammar, as VS Code does (vscode-textmate
// and the Oniguruma regex engine, from the repository's npm tools), and prints the tokens as JSON:
//   {"file": [[{"line": 1, "text": "offer", "scopes": ["source.odl", "storage.type.offer.odl"]}, ...], ...]}
// one list per line. `node tokenize.js FILE...`, or `--stdin` to read {"name": "text", ...} as JSON
// (tests/test_editor_grammar.py sends every file in one run).
'use strict';
const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const GRAMMAR = path.join(__dirname, '..', 'syntaxes', 'odl.tmLanguage.json');

async function loadGrammar() {
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve('vscode-oniguruma')), 'onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.odl') return null;
      return vsctm.parseRawGrammar(fs.readFileSync(GRAMMAR, 'utf8'), GRAMMAR);
    },
  });
  return registry.loadGrammar('source.odl');
}

function tokenize(grammar, text) {
  let state = vsctm.INITIAL;
  return text.split('\n').map((line, i) => {
    const result = grammar.tokenizeLine(line, state);
    state = result.ruleStack;
    return result.tokens.map((t) => ({
      line: i + 1, text: line.slice(t.startIndex, t.endIndex), scopes: t.scopes,
    }));
  });
}

async function main() {
  const args = process.argv.slice(2);
  let sources;
  if (args.length === 1 && args[0] === '--stdin') {
    sources = JSON.parse(fs.readFileSync(0, 'utf8'));
  } else if (args.length > 0 && !args.includes('--stdin')) {
    sources = Object.fromEntries(args.map((f) => [f, fs.readFileSync(f, 'utf8')]));
  } else {
    console.error('usage: tokenize.js FILE... | tokenize.js --stdin  (stdin: {"name": "text", ...})');
    process.exit(2);
  }
  const grammar = await loadGrammar();
  const out = {};
  for (const [name, text] of Object.entries(sources)) out[name] = tokenize(grammar, text);
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(`tokenize.js: ${e.message}`);
  process.exit(1);
});
