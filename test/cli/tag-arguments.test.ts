/**
 * Tag arguments (`snapshot list --tag k=v`, `snapshot tag S k=v...`) are refused before
 * connecting when one would otherwise be dropped without a word: a key given twice, or a key
 * that a plain object swallows (`__proto__`).
 */
import t from 'tap';
import { ensureBuilt, runCli } from '../integration/fixtures/harness';

const socket = ['--socket', '/nonexistent/blocksnap.sock', '--json'];

t.test('snapshot list --tag with the same key twice is InvalidArgument naming the key', async (t) => {
  ensureBuilt();
  const r = await runCli(['snapshot', 'list', '--tag', 'env=prod', '--tag', 'env=dev', ...socket]);
  t.equal(r.code, 2);
  t.match(r.json(), { error: { code: 'InvalidArgument', message: 'tag key env is given more than once' } });
});

t.test('snapshot tag with a __proto__ key is InvalidArgument naming the key', async (t) => {
  ensureBuilt();
  const r = await runCli(['snapshot', 'tag', 's1', '__proto__=x', 'env=prod', ...socket]);
  t.equal(r.code, 2);
  t.match(r.json(), { error: { code: 'InvalidArgument', message: /^invalid tag key "__proto__"/ } });
});

t.test('snapshot list --tag with different keys still goes on to the daemon', async (t) => {
  ensureBuilt();
  const r = await runCli(['snapshot', 'list', '--tag', 'env=prod', '--tag', 'keep=yes', ...socket]);
  t.match(r.json(), { error: { code: 'DaemonUnavailable' } });
});
