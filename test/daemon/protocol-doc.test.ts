import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { EventEmitter } from 'node:events';
import type { Catalog } from '../../src/catalog/catalog';
import { METHODS } from '../../src/daemon/methods';
import { JobRunner } from '../../src/engine/jobs';
import { JOB_KINDS } from '../../src/engine/types';

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

t.test('the Job object documents every field a job has, and every kind', async (t) => {
  const start = doc.indexOf('**Job**: ');
  const paragraph = doc.slice(start, doc.indexOf('\n\n', start));
  // Only what start() touches: the job's own record, made as the daemon makes it.
  const catalog = { txn: (fn: () => unknown) => fn(), putJob: () => undefined } as unknown as Catalog;
  const job = new JobRunner(catalog, new EventEmitter()).start('j-0123456789abcdef', 'verify', { diskId: null, snapshotId: null, target: null }, async () => null);
  for (const field of Object.keys(job)) t.match(paragraph, `\`${field}\``, `Job.${field} is documented`);
  for (const kind of JOB_KINDS) t.match(paragraph, `\`${kind}\``, `job kind ${kind} is documented`);
});
