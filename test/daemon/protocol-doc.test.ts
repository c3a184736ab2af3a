import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { METHODS } from '../../src/daemon/methods';

const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'protocol.md'), 'utf8');
const section = doc.slice(doc.indexOf('## Methods'), doc.indexOf('## Limits'));
const documented = [...section.matchAll(/^### `([a-z.]+)`$/gm)].map((m) => m[1]!);

t.test('every method the daemon serves is documented', async (t) => {
  for (const name of Object.keys(METHODS)) t.ok(documented.includes(name), `${name} has a section in docs/protocol.md`);
});

t.test('every documented method exists', async (t) => {
  for (const name of documented) t.ok(Object.prototype.hasOwnProperty.call(METHODS, name), `${name} is in the method table`);
});

t.test('each documented method names every param it takes', async (t) => {
  for (const [name, spec] of Object.entries(METHODS)) {
    const body = section.slice(section.indexOf(`### \`${name}\``)).split(/\n### /)[0]!;
    for (const param of Object.keys(spec.params)) t.match(body, `\`${param}`, `${name} documents ${param}`);
  }
});
