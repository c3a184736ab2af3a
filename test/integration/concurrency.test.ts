import { join } from 'node:path';
import t from 'tap';
import { freshDaemon } from './fixtures/harness';
import { MiB, makeImage } from './fixtures/images';

t.test('20 clients at once are all served', async (t) => {
  const d = await freshDaemon(t);
  for (let i = 0; i < 4; i++) {
    makeImage(join(d.imageRoot, `vm${i}.img`), 8 * MiB, [0, 1]);
    await d.json('disk', 'add', `vm${i}.img`, '--name', `vm${i}`);
  }
  const runs = Array.from({ length: 20 }, (_, i) => {
    if (i < 4) return d.cli('snapshot', 'create', `vm${i}`, '--name', `s${i}`, '--json');
    if (i < 12) return d.cli('disk', 'list', '--json');
    if (i < 16) return d.cli('store', 'stats', '--json');
    return d.cli('disk', 'show', `vm${i % 4}`, '--json');
  });
  const results = await Promise.all(runs);
  results.forEach((r, i) => t.equal(r.code, 0, `client ${i}: ${r.stdout}${r.stderr}`));
  for (let i = 0; i < 4; i++) t.match(results[i]!.json(), { name: `s${i}`, status: 'available' });
  t.equal((await d.json('snapshot', 'list')).length, 4);
});

t.test('one job per disk: a concurrent snapshot of the same disk is DiskBusy or queued behind', async (t) => {
  const d = await freshDaemon(t);
  makeImage(join(d.imageRoot, 'vm.img'), 16 * MiB, [0, 1, 2, 3]);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  const [a, b] = await Promise.all([
    d.cli('snapshot', 'create', 'vm', '--name', 'a', '--json'),
    d.cli('snapshot', 'create', 'vm', '--name', 'b', '--json'),
  ]);
  for (const r of [a, b]) {
    if (r.code === 0) t.match(r.json(), { status: 'available' });
    else t.match(r.json(), { error: { code: 'DiskBusy' } });
  }
  t.ok(a.code === 0 || b.code === 0, 'at least one snapshot was taken');
});
