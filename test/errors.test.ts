import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ERROR_CODES, toBlocksnapError } from '../src/errors';
import { exitStatusFor } from '../src/cli/exit-status';

/** Rows of the codes table in docs/errors.md: | `Code` | meaning | status | cause | */
function documentedCodes(): Map<string, { status: number; meaning: string }> {
  const text = readFileSync(join(__dirname, '..', 'docs', 'errors.md'), 'utf8');
  const section = text.slice(text.indexOf('## Codes'));
  const rows = new Map<string, { status: number; meaning: string }>();
  for (const line of section.split('\n')) {
    const m = /^\|\s*`([A-Za-z]+)`\s*\|([^|]*)\|\s*(\d+)\s*\|/.exec(line);
    if (m) rows.set(m[1]!, { meaning: m[2]!.trim(), status: Number(m[3]) });
  }
  return rows;
}

const documented = documentedCodes();
const registered = Object.keys(ERROR_CODES);

t.test('every registered code is documented', async (t) => {
  for (const code of registered) t.ok(documented.has(code), `${code} is in docs/errors.md`);
});

t.test('every documented code still exists', async (t) => {
  for (const code of documented.keys()) t.ok(registered.includes(code), `${code} is in src/errors.ts`);
});

t.test('each documented exit status is the one the CLI uses', async (t) => {
  for (const [code, row] of documented) t.equal(row.status, exitStatusFor(code), `exit status of ${code}`);
});

t.test('each documented code has a meaning', async (t) => {
  for (const [code, row] of documented) t.ok(row.meaning.length > 10, `${code} has a meaning`);
});

t.test('each documented meaning is the registry\'s, word for word (markdown aside)', async (t) => {
  // The table sets names in code type (`auto`) and uses a real ellipsis; the registry quotes.
  const words = (text: string): string => text.replace(/[`"]/g, '').replace(/…/g, '...');
  for (const [code, row] of documented) {
    if (registered.includes(code)) t.equal(words(row.meaning), words(ERROR_CODES[code as keyof typeof ERROR_CODES]), `meaning of ${code}`);
  }
});

t.test('errors the system or a device gives are IOError, not Internal', async (t) => {
  for (const errno of ['EIO', 'EROFS', 'EFBIG', 'EMFILE', 'ENFILE', 'ENXIO', 'ENODEV']) {
    const err = Object.assign(new Error(`${errno}: refused, open '/data/blocks/tmp/x'`), { code: errno });
    t.match(toBlocksnapError(err), { code: 'IOError', message: new RegExp(errno) }, errno);
  }
  t.equal(toBlocksnapError(Object.assign(new Error('EDQUOT: disk quota exceeded'), { code: 'EDQUOT' })).code, 'NoSpace', 'a quota is space');
});
