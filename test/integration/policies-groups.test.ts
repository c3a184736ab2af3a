/** Policies, groups, tags and quotas through the real daemon and the real CLI. */
import { join } from 'node:path';
import t from 'tap';
import { freshDaemon, runCli } from './fixtures/harness';
import { BLOCK, MiB, makeImage, scribble, sha256File } from './fixtures/images';

t.test('policy create, bind, run, show; retention keeps the newest automatic snapshot', async (t) => {
  const d = await freshDaemon(t);
  makeImage(join(d.imageRoot, 'web.img'), 8 * MiB, [0]);
  await d.json('disk', 'add', 'web.img', '--name', 'web');
  await d.json('snapshot', 'create', 'web', '--name', 'manual-one');
  const p = await d.json('policy', 'create', '--name', 'daily', '--hours', '2,14', '--weekdays', '1-5', '--time-zone', 'Europe/Berlin', '--keep-last', '1');
  t.match(p, { name: 'daily', hours: [2, 14], weekdays: [1, 2, 3, 4, 5], timeZone: 'Europe/Berlin', retention: { keepLast: 1, days: null }, enabled: true });
  t.match(p.nextRunAt, /^\d{4}-\d\d-\d\dT(00|01|12|13):00:00\.000Z$/, 'next run at 02:00 or 14:00 Berlin time');
  t.same((await d.json('policy', 'bind', 'daily', 'web')).diskIds.length, 1);

  const first = await d.json('policy', 'run', 'daily');
  t.equal(first.disks[0].outcome, 'created');
  scribble(join(d.imageRoot, 'web.img'), 0, 4096);
  const second = await d.json('policy', 'run', 'daily');
  t.same(second.disks[0].expired, [first.disks[0].snapshotId], 'keep-last 1 expired the first automatic snapshot');
  const snaps = await d.json('snapshot', 'list', 'web');
  t.same(snaps.map((s: { type: string }) => s.type), ['manual', 'auto'], 'the manual snapshot stays');
  // Two runs within one second share the timestamp; the second gets a -2 suffix (uniqueName).
  t.match(snaps[1].name, /^auto-daily-\d{8}T\d{6}Z(-\d+)?$/);
  const shown = await d.json('policy', 'show', 'daily');
  t.equal(shown.history.length, 2);
  const human = await d.cli('policy', 'show', 'daily');
  t.match(human.stdout, /hours 2,14, weekdays 1-5 \(Europe\/Berlin\)/);
  t.match(human.stdout, /retention:\s+last 1/);

  const other = await d.json('policy', 'create', '--name', 'other', '--hours', '3', '--retention-days', '-1');
  t.equal(other.retention.days, -1, '--retention-days -1 is accepted');
  const conflict = await d.cli('policy', 'bind', 'other', 'web', '--json');
  t.equal(conflict.code, 1);
  t.equal(conflict.json().error.code, 'DiskHasPolicy');
  const bad = await d.cli('policy', 'create', '--name', 'x', '--hours', '25', '--json');
  t.equal(bad.code, 2, 'a bad hour is a usage error');
  const both = await d.cli('policy', 'create', '--name', 'x', '--hours', '1', '--retention-days', '3', '--keep-last', '2', '--json');
  t.equal(both.json().error.code, 'InvalidArgument');
  t.equal((await d.cli('policy', 'show', 'nope', '--json')).json().error.code, 'PolicyNotFound');
  t.equal((await d.json('policy', 'delete', 'other')).name, 'other');
});

t.test('group create and rollback through the CLI; members, tags and the quota', async (t) => {
  const d = await freshDaemon(t, ['--manual-snapshot-quota', '2']);
  const imgs = ['root', 'data'].map((n) => join(d.imageRoot, `${n}.img`));
  makeImage(imgs[0]!, 8 * MiB, [0, 1]);
  makeImage(imgs[1]!, 12 * MiB, [2]);
  await d.json('disk', 'add', 'root.img', '--name', 'root');
  await d.json('disk', 'add', 'data.img', '--name', 'data');
  const hashes = imgs.map((p) => sha256File(p));

  const g = await d.json('group', 'create', 'root', 'data', '--name', 'pre-upgrade', '--description', 'release 42');
  t.match(g, { name: 'pre-upgrade', status: 'available', description: 'release 42' });
  t.equal(g.snapshotIds.length, 2);
  scribble(imgs[0]!, 0, 4096);
  scribble(imgs[1]!, 2 * BLOCK, 4096);
  const r = await d.json('group', 'rollback', 'pre-upgrade');
  t.same(r.jobs.map((j: { state: string }) => j.state), ['succeeded', 'succeeded']);
  t.same(imgs.map((p) => sha256File(p)), hashes, 'both disks restored bit-exactly');

  const del = await d.cli('snapshot', 'delete', g.snapshotIds[0], '--json');
  t.equal(del.code, 1);
  t.equal(del.json().error.code, 'SnapshotInGroup');

  const tagged = await d.json('snapshot', 'tag', g.snapshotIds[0], 'env=prod', 'ticket=OPS-1');
  t.same(tagged.tags, { env: 'prod', ticket: 'OPS-1' });
  t.equal(tagged.groupId, g.id);
  t.same((await d.json('snapshot', 'list', '--tag', 'env=prod')).map((s: { id: string }) => s.id), [g.snapshotIds[0]]);
  t.same(await d.json('snapshot', 'list', '--tag', 'env=prod', '--tag', 'ticket=OPS-2'), []);
  t.same((await d.json('snapshot', 'untag', g.snapshotIds[0], 'ticket')).tags, { env: 'prod' });

  await d.json('snapshot', 'create', 'root', '--name', 'second');
  const over = await d.cli('snapshot', 'create', 'root', '--name', 'third', '--json');
  t.equal(over.code, 1);
  t.equal(over.json().error.code, 'SnapshotQuotaExceeded', 'the daemon\'s configured quota of 2');

  const gone = await d.json('group', 'delete', 'pre-upgrade');
  t.equal(gone.id, g.id);
  t.same((await d.json('snapshot', 'list')).map((s: { name: string }) => s.name), ['second']);
  t.same(await d.json('group', 'list'), []);
  t.equal((await d.cli('group', 'show', 'pre-upgrade', '--json')).json().error.code, 'GroupNotFound');
});

t.test('every new command has --help with examples', async (t) => {
  for (const args of [['policy', 'create'], ['policy', 'run'], ['policy', 'bind'], ['group', 'create'], ['group', 'rollback'], ['snapshot', 'tag'], ['snapshot', 'untag']]) {
    const r = await runCli([...args, '--help']);
    t.equal(r.code, 0, `${args.join(' ')} --help`);
    t.match(r.stdout, /Examples:\n {2}\$ blocksnap /, `${args.join(' ')} shows examples`);
  }
});
