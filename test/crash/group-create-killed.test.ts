/**
 * The real daemon killed (SIGKILL) the moment a group member's record has committed, while the
 * group is still being created. Its member list used to commit after the members, so such a kill
 * left a member naming a group that did not list it: the next start neither removed it nor let
 * anything delete it, and its disk could never be removed. Each member now commits with its
 * place in the list: at the kill the group lists it, and the next start removes it.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import type { GroupRecord } from '../../src/catalog/model-records';
import type { Snapshot } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout } from './daemon-process';

const MiB = 1024 * 1024;
const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');

function randomImage(path: string, mib: number): void {
  const fd = openSync(path, 'w', 0o600);
  const chunk = randomBytes(MiB);
  for (let i = 0; i < mib; i++) { chunk.writeUInt32LE(i, 0); writeSync(fd, chunk, 0, chunk.length, i * MiB); }
  closeSync(fd);
}

t.test('killed right after a member\'s commit: the group lists it, and the next start removes it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsgk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // One thread and 32 MiB of data each: the members are still being scanned when the watcher kills.
  const layout = makeLayout(dir, { threads: 1 });
  for (const n of ['a', 'b']) randomImage(join(layout.imageRoot, `${n}.raw`), 32);
  let d = await DaemonProcess.start(layout);
  t.teardown(() => d.kill());
  let c = await connect(layout);
  for (const n of ['a', 'b']) await c.call('disk.add', { path: join(layout.imageRoot, `${n}.raw`), name: n });

  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'group-member-commit-kill-child.ts'))})`;
  const watcher = spawn(process.execPath, ['-e', main, join(layout.dataDir, 'catalog.mdb'), String(d.pid)], {
    cwd: join(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: watcher.stdout! })[Symbol.asyncIterator]();
  t.equal((await lines.next()).value, 'watching');
  c.call('group.create', { disks: ['a', 'b'], name: 'g1' }).catch(() => { /* the daemon is killed under it */ });
  const seen = JSON.parse((await lines.next()).value as string) as { snapshotId: string; groupId: string; listed: boolean };
  t.equal((await d.exited).signal, 'SIGKILL', 'the daemon was killed while the group was being created');
  t.ok(seen.listed, 'at the kill, the group listed the member that named it');
  c.close();

  d = await DaemonProcess.start(layout);
  c = await connect(layout);
  t.teardown(() => c.close());
  const g = await c.call<GroupRecord>('group.show', { group: seen.groupId });
  t.equal(g.status, 'error');
  t.equal(g.error?.code, 'Interrupted');
  t.same(g.snapshotIds, [], 'no member left in the group');
  const snaps = await c.call<Snapshot[]>('snapshot.list', {});
  t.same(snaps.filter((s) => s.groupId !== null), [], 'no snapshot names a group');
  for (const n of ['a', 'b']) {
    await c.call('disk.remove', { disk: n, deleteSnapshots: true });
  }
  t.same(await c.call('disk.list', {}), [], 'both disks could be removed');
});
