/**
 * The hostile tests' set-up: a real daemon with one image root, and a directory beside it that no
 * root covers, where the files a client must never reach through the daemon are put.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { DaemonClient } from '../../src/daemon/client';
import { DaemonProcess, connect, makeLayout } from '../crash/daemon-process';

export interface DaemonWithOutside {
  c: DaemonClient;
  /** The daemon's only image root. */
  root: string;
  /** Outside every image root. */
  outside: string;
  daemon: DaemonProcess;
  dataDir: string;
}

export async function daemonWithOutside(t: Test, blockSize: number): Promise<DaemonWithOutside> {
  const dir = mkdtempSync(join(tmpdir(), 'bsh-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  const layout = makeLayout(dir, { blockSize });
  const daemon = await DaemonProcess.start(layout);
  t.teardown(() => daemon.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  return { c, root: layout.imageRoot, outside, daemon, dataDir: layout.dataDir };
}
