/**
 * A snapshot served over NBD verifies each block on its first read and answers a damaged one with
 * an I/O error, never wrong data. That read is as good a finding as `store verify`'s: the block is
 * recorded for repair, so that the next snapshot producing it writes it again, with no verify run
 * in between.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Job } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout } from '../crash/daemon-process';
import { makeImage, pattern, writeAt } from '../helpers/images';
import { marksIn } from '../helpers/damage-marks';
import { blockPath, flipByte, sha } from '../helpers/store-damage';

const BLOCK = 64 * 1024;
const noNbdcopy = spawnSync('nbdcopy', ['--version']).status === 0 ? false : 'nbdcopy is not installed (apt-get install libnbd-bin)';

t.test('an NBD read of a snapshot that meets a damaged block marks it damaged', { skip: noNbdcopy }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsnm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir, { blockSize: BLOCK });
  const nbd = join(dir, 'nbd.sock');
  const image = join(layout.imageRoot, 'vm.img');
  makeImage(image, 4 * BLOCK);
  for (let i = 0; i < 4; i++) writeAt(image, i * BLOCK, pattern(`n-${i}`, BLOCK));
  const daemon = await DaemonProcess.start(layout, ['--nbd-socket', nbd]);
  t.teardown(() => daemon.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  await c.call('disk.add', { path: image, name: 'vm' });
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's1', wait: true })).state, 'succeeded');
  const exp = await c.call<{ uri: string }>('export.start', { snapshot: 's1', name: 'vm-s1' });

  const rotten = sha(pattern('n-2', BLOCK));
  flipByte(blockPath(layout.dataDir, rotten), 64 + 2000);
  const copy = spawnSync('nbdcopy', [exp.uri, join(layout.imageRoot, 'copy.raw')], { encoding: 'utf8' });
  t.not(copy.status, 0, 'the client gets an I/O error');

  c.close();
  t.equal(await daemon.stop(), 0);
  const marks = await marksIn(layout.dataDir, BLOCK);
  t.same([...marks.keys()], [rotten], 'exactly the damaged block is marked');
  t.match(marks.get(rotten), { reason: 'digest-mismatch', foundBy: 'read' });
});
