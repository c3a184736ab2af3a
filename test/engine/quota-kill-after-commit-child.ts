/**
 * An engine in a child process that takes one automatic snapshot of a disk at its automatic quota
 * and is SIGKILLed by itself the moment that snapshot has committed: the engine logs "snapshot
 * available" right after the commit, before the quota deletes anything. Nothing after that
 * commit runs, as when the daemon is killed there.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' DATA_DIR IMAGE_ROOT DISK AUTO_QUOTA
 */
import { Engine } from '../../src/engine';
import type { EngineLogger } from '../../src/engine/engine';

async function main(): Promise<void> {
  const [dataDir, imageRoot, disk, quota] = process.argv.slice(-4) as [string, string, string, string];
  const quiet = (): void => {};
  const logger: EngineLogger = {
    debug: quiet, warn: quiet, error: quiet,
    info: (_obj, msg) => { if (msg === 'snapshot available') process.kill(process.pid, 'SIGKILL'); },
  };
  const engine = await Engine.open({ dataDir, imageRoots: [imageRoot], blockSize: 64 * 1024, snapshotQuota: { auto: Number(quota) }, logger });
  await engine.waitJob(engine.startSnapshot(disk, { type: 'auto', name: 'auto-killed-after-commit' }).id);
  process.stderr.write('the snapshot ended without being killed after its commit\n');
  process.exit(1);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
