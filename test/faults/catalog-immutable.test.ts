import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { engineWithSnapshot } from '../helpers/engine';
import { fillBlock } from '../helpers/images';

// A catalog file that may not be written (immutable here; a filesystem remounted read-only after an
// error is the same errno class) fails the work that needs it with an IOError saying so, and
// leaves no disk busy behind: once the file is writable again, the same work runs.

const BLOCK = 64 * 1024;

function chattr(flag: string, path: string): boolean {
  return spawnSync('chattr', [flag, path], { stdio: 'ignore' }).status === 0;
}

t.test('a rollback refused by an immutable catalog leaves the disk free for the next one', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BLOCK, blocks: 8, filled: 4, disk: 'vm', snapshot: 's0' });
  const before = readFileSync(f.img);
  fillBlock(f.img, 1, BLOCK, 'changed');
  const catalogFile = join(f.dataDir, 'catalog.mdb');
  if (!chattr('+i', catalogFile)) {
    t.pass('nothing to check without chattr', { skip: 'chattr +i is not available here (not root, or the filesystem has no such attribute)' });
    return;
  }
  t.teardown(() => { chattr('-i', catalogFile); });

  let failure: { code?: string; message?: string } | null = null;
  try {
    const job = f.engine.startRollback('vm', 's0');
    const done = await f.engine.waitJob(job.id);
    failure = done.error;
  } catch (err) {
    failure = err as { code?: string; message?: string };
  }
  t.match(failure, { code: 'IOError', message: /catalog could not be written: its file in the data dir .* may not be written by the daemon \(EPERM\); check the owner/ });

  t.ok(chattr('-i', catalogFile));
  const again = await f.engine.waitJob(f.engine.startRollback('vm', 's0').id);
  t.equal(again.state, 'succeeded', `then the rollback runs (${again.error?.code ?? ''} ${again.error?.message ?? ''})`);
  t.ok(readFileSync(f.img).equals(before), 'and the image is the snapshot again');
});
