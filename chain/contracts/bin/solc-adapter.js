// The compiler half of bin/solc: runs npm's solcjs in-process on a standard-JSON input file and
// writes the output to a file. bin/solc owns the pipes; this script only ever touches files, so
// neither a non-blocking stdin (EAGAIN) nor a pipe closed early by process exit can corrupt output.
//
// Usage: node solc-adapter.js IN_FILE OUT_FILE [solc arguments...]
'use strict';

const fs = require('fs');
const path = require('path');

const [inFile, outFile, ...args] = process.argv.slice(2);
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

// "0.8.30+commit.73712a01.Emscripten.clang" -> the platform part a native build prints.
function nativeVersion() {
  return solc.version().replace(/\.Emscripten\.clang$/, '.Linux.g++');
}

if (args.includes('--version')) {
  fs.writeFileSync(outFile, `solc, the solidity compiler commandline interface\nVersion: ${nativeVersion()}\n`);
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write('bin/solc supports only --version and --standard-json (it serves forge)\n');
  process.exit(2);
}

// Directories an import may be resolved against when forge leaves a source out of the input.
const roots = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--base-path' || args[i] === '--include-path') roots.push(args[++i]);
  else if (args[i].startsWith('--base-path=')) roots.push(args[i].slice('--base-path='.length));
  else if (args[i].startsWith('--include-path=')) roots.push(args[i].slice('--include-path='.length));
}
if (roots.length === 0) roots.push(process.cwd());

function findImport(p) {
  const candidates = path.isAbsolute(p) ? [p] : roots.map((r) => path.join(r, p));
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, 'utf8') };
    } catch (_) {
      // try the next root
    }
  }
  return { error: `File not found: ${p}` };
}

const output = solc.compile(fs.readFileSync(inFile, 'utf8'), { import: findImport });
fs.writeFileSync(outFile, output);
