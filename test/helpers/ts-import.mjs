// The entry for `node --import`: CommonJS requires of .ts go through ts-require.js, and a .ts file
// that reaches the ES module loader (the main module, once any --import loader is present, as
// under tap) is handed to the CommonJS loader too, since the sources are CommonJS.
import { createRequire, register } from 'node:module';

createRequire(import.meta.url)('./ts-require.js');
register('./ts-hooks.mjs', import.meta.url);
