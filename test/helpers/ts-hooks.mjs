// Module loader hooks (see ts-import.mjs): a .ts file is CommonJS. Without a source, Node runs it
// through the CommonJS loader, which ts-require.js taught to transpile.
export async function load(url, context, nextLoad) {
  if (url.startsWith('file:') && url.endsWith('.ts')) return { format: 'commonjs', shortCircuit: true };
  return nextLoad(url, context);
}
