'use strict';
/**
 * Loads the TypeScript of tests and of the sources they import, for tap and for the child
 * processes tests spawn (`node -r test/helpers/ts-require.js child.ts`).
 *
 * It does what a transpile-only ts-node does (TypeScript's own transpileModule, the options of
 * tsconfig.json, an inline source map for coverage and stack traces) and keeps each result in
 * node_modules/.cache/blocksnap-ts, keyed by the source, the options and the TypeScript version.
 * The suite runs ~300 test processes that import the same ~180 sources: transpiling them again in
 * each cost 2-3 s of CPU per process, a quarter of the suite's time on two cores.
 */
const { createHash } = require('node:crypto');
const { mkdirSync, readFileSync, renameSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..', '..');
const cacheDir = join(root, 'node_modules', '.cache', 'blocksnap-ts');
const tsconfigText = readFileSync(join(root, 'tsconfig.json'), 'utf8');
const tsVersion = JSON.parse(readFileSync(require.resolve('typescript/package.json', { paths: [root] }), 'utf8')).version;
const salt = `${tsVersion}\0${tsconfigText}\0`;

let compilerOptions = null;
function transpile(source, filename) {
  // TypeScript is loaded only when something is not cached yet: most processes never need it.
  const ts = require(require.resolve('typescript', { paths: [root] }));
  if (compilerOptions === null) {
    const parsed = ts.parseConfigFileTextToJson(join(root, 'tsconfig.json'), tsconfigText);
    if (parsed.error) throw new Error(ts.flattenDiagnosticMessageText(parsed.error.messageText, '\n'));
    const converted = ts.convertCompilerOptionsFromJson(parsed.config.compilerOptions, root);
    compilerOptions = { ...converted.options, noEmit: false, sourceMap: false, inlineSourceMap: true, inlineSources: true, declaration: false };
  }
  return ts.transpileModule(source, { fileName: filename, compilerOptions }).outputText;
}

function compiled(filename) {
  const source = readFileSync(filename, 'utf8');
  const key = createHash('sha256').update(salt).update(filename).update('\0').update(source).digest('hex');
  const cached = join(cacheDir, `${key}.js`);
  try {
    return readFileSync(cached, 'utf8');
  } catch {
    // Not cached yet (or the cache is unwritable): transpile, and publish whole or not at all,
    // since the other test processes read the same directory.
  }
  const code = transpile(source, filename);
  try {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    writeFileSync(tmp, code);
    renameSync(tmp, cached);
  } catch {
    // A read-only checkout still runs, only slower.
  }
  return code;
}

require.extensions['.ts'] = function loadTypeScript(module, filename) {
  module._compile(compiled(filename), filename);
};
