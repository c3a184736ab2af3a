/**
 * The real daemon serving a copy-on-write disk writable over NBD, for tests that SIGKILL it after
 * an answer and check what the answer promised once it is back: the disk "served", a clone of
 * the snapshot of an 8 MiB raw image of 0x5a bytes, in a fresh temporary directory.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { DaemonClient } from '../../src/daemon/client';
import type { Job } from '../../src/engine/types';
import { pattern } from '../helpers/images';
import { DaemonProcess, connect, makeLayout, type Layout } from './daemon-process';
import { NbdSession } from './nbd-session';

const MiB = 1024 * 1024;

export interface Write { offset: number; data: Buffer }

export class ServedCowDisk {
  private constructor(readonly layout: Layout, readonly nbdSocket: string, public daemon: DaemonProcess, public client: DaemonClient) {}

  static async start(t: Test): Promise<ServedCowDisk> {
    const dir = mkdtempSync(join(tmpdir(), 'bsc-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const layout = makeLayout(dir);
    const nbdSocket = join(dir, 'nbd.sock');
    const img = join(layout.imageRoot, 'vm.img');
    writeFileSync(img, Buffer.alloc(8 * MiB, 0x5a));
    const daemon = await DaemonProcess.start(layout, ['--nbd-socket', nbdSocket]);
    const s = new ServedCowDisk(layout, nbdSocket, daemon, await connect(layout));
    t.teardown(async () => {
      s.client.close();
      await s.daemon.kill();
    });
    await s.client.call('disk.add', { path: img, name: 'vm' });
    const base = await s.client.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true });
    if (base.state !== 'succeeded') throw new Error(`the base snapshot ended ${base.state}`);
    await s.client.call('clone.cow', { snapshot: 'base', name: 'served' });
    await s.client.call('export.start', { disk: 'served', writable: true });
    return s;
  }

  async session(): Promise<NbdSession> {
    return (await NbdSession.open(this.nbdSocket, 'served')).session;
  }

  /** SIGKILL, then the daemon again on the same data dir, serving the disk again. */
  async killAndRestart(): Promise<void> {
    this.client.close();
    await this.daemon.kill();
    this.daemon = await DaemonProcess.start(this.layout, ['--nbd-socket', this.nbdSocket]);
    this.client = await connect(this.layout);
    await this.client.call('export.start', { disk: 'served', writable: true });
  }

  /** How many of `writes` do not read back. */
  async lost(writes: Write[]): Promise<number> {
    const s = await this.session();
    try {
      let n = 0;
      for (const w of writes) if (!(await s.read(w.offset, w.data.length)).equals(w.data)) n++;
      return n;
    } finally {
      s.close();
    }
  }
}

/**
 * `count` writes spread over the disk, unaligned ones among them (copy-ups), each of its own
 * content, so that a write lost or landed elsewhere shows.
 */
export function spreadWrites(count: number): Write[] {
  return Array.from({ length: count }, (_, i) => ({ offset: i * 320 * 1024 + (i % 3) * 512, data: pattern(`w${i}`, 4096 + (i % 4) * 8192) }));
}
