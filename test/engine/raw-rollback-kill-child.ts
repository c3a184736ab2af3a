/**
 * An engine in a child process that starts one rollback of a raw disk and is SIGKILLed by itself
 * at a chosen point of it, as a daemon killed there would be:
 *  - `before-mark`: once the apply has compared and checked everything, before the journal
 *    records that it writes;
 *  - `after-mark`: once the journal records it, before the first write (what any kill in the
 *    write pass leaves in the catalog);
 *  - `at-apply`: when the apply is called, before it compares anything.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' DATA_DIR IMAGE_ROOT DISK SNAPSHOT POINT
 */
import { Engine } from '../../src/engine';
import type { applyImage } from '../../src/native';

async function main(): Promise<void> {
  const [dataDir, imageRoot, disk, snapshot, point] = process.argv.slice(-5) as [string, string, string, string, string];
  const die = (): never => {
    process.kill(process.pid, 'SIGKILL');
    throw new Error('not killed');
  };
  // Test hook: the point is reached through the apply the engine calls.
  const native = require('../../src/native') as { applyImage: typeof applyImage };
  const real = native.applyImage;
  native.applyImage = async (o) => {
    if (point === 'at-apply') die();
    const mark = o.beforeWrite;
    return real({
      ...o,
      beforeWrite: () => {
        if (point === 'before-mark') die();
        mark?.();
        if (point === 'after-mark') die();
      },
    });
  };
  const engine = await Engine.open({ dataDir, imageRoots: [imageRoot], blockSize: 64 * 1024 });
  const job = await engine.waitJob(engine.startRollback(disk, snapshot).id);
  process.stderr.write(`the rollback ended ${job.state} without being killed at ${point}: ${job.error?.message ?? ''}\n`);
  process.exit(1);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
