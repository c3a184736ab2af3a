/**
 * `export stop` answers once the export's volume is closed, so writes its clients were answered
 * for but never flushed are durable by then: a SIGKILL right after the answer loses none.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Job } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout } from './daemon-process';
import { NbdSession } from './nbd-session';

const MiB = 1024 * 1024;
const DISK = 8 * MiB;

/** Distinct content per write, so a write lost or landed elsewhere shows. */
function pattern(i: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let o = 0; o < length; o += 4) b.writeUInt32LE((i * 0x9e3779b1 + o) >>> 0, o);
  return b;
}

t.test('writes answered but never flushed survive a SIGKILL right after export stop answers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bse-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir);
  const nbdSocket = join(dir, 'nbd.sock');
  const img = join(layout.imageRoot, 'vm.img');
  writeFileSync(img, Buffer.alloc(DISK, 0x5a));

  let d = await DaemonProcess.start(layout, ['--nbd-socket', nbdSocket]);
  t.teardown(() => d.kill());
  let c = await connect(layout);
  await c.call('disk.add', { path: img, name: 'vm' });
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true })).state, 'succeeded');
  await c.call('clone.cow', { snapshot: 'base', name: 'served' });
  await c.call('export.start', { disk: 'served', writable: true });

  // Writes spread over the disk, unaligned ones among them (copy-ups), none flushed or FUA.
  const writes = Array.from({ length: 24 }, (_, i) => ({ offset: i * 320 * 1024 + (i % 3) * 512, data: pattern(i, 4096 + (i % 4) * 8192) }));
  const { session } = await NbdSession.open(nbdSocket, 'served');
  for (const w of writes) t.equal(await session.write(w.offset, w.data, false), 0, `write at ${w.offset} answered`);

  await c.call('export.stop', { name: 'served' });
  c.close();
  session.close();
  await d.kill();

  d = await DaemonProcess.start(layout, ['--nbd-socket', nbdSocket]);
  c = await connect(layout);
  t.teardown(() => c.close());
  await c.call('export.start', { disk: 'served', writable: true });
  const { session: again } = await NbdSession.open(nbdSocket, 'served');
  t.teardown(() => again.close());
  let lost = 0;
  for (const w of writes) if (!(await again.read(w.offset, w.data.length)).equals(w.data)) lost++;
  t.equal(lost, 0, 'every answered write reads back after the restart');
});
