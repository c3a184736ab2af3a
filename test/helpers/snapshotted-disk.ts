/**
 * The real daemon on a fresh data dir, serving one raw disk that already has a snapshot: where a
 * test that damages the store by hand (store-damage.ts) starts from. Everything is removed or
 * stopped at the test's teardown, including daemons the test starts again on the same layout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { DaemonClient } from '../../src/daemon/client';
import type { Job, Snapshot } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout, type Layout } from '../crash/daemon-process';
import { fillBlock, makeImage } from './images';

export interface Served { daemon: DaemonProcess; c: DaemonClient }

export interface SnapshottedDisk extends Served {
  layout: Layout;
  /** The disk `vm`'s image, in the layout's image root. */
  image: string;
  /** Its first snapshot, `s1`. */
  s1: Snapshot;
}

/** A daemon on `layout` and a connection to it, first start or a restart after a kill. */
export async function start(t: Test, layout: Layout): Promise<Served> {
  const daemon = await DaemonProcess.start(layout);
  t.teardown(() => daemon.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  return { daemon, c };
}

/**
 * Disk `vm` of `blocks` blocks, block i holding pattern(`<label>-i`) so that a test can name any
 * block's digest, snapshotted as `s1` by a daemon on a fresh layout.
 */
export async function snapshottedDisk(t: Test, o: { label: string; blocks: number; blockSize?: number }): Promise<SnapshottedDisk> {
  const blockSize = o.blockSize ?? 64 * 1024;
  const dir = mkdtempSync(join(tmpdir(), 'bsd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir, { blockSize });
  const image = join(layout.imageRoot, 'vm.img');
  makeImage(image, o.blocks * blockSize);
  for (let i = 0; i < o.blocks; i++) fillBlock(image, i, blockSize, `${o.label}-${i}`);
  const served = await start(t, layout);
  await served.c.call('disk.add', { path: image, name: 'vm' });
  const s1 = (await served.c.call<Job>('snapshot.create', { disk: 'vm', name: 's1', wait: true })).result as Snapshot;
  return { ...served, layout, image, s1 };
}
