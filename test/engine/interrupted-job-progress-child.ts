/**
 * An engine in a child process whose snapshot job reports progress and is then SIGKILLed, mid-job.
 * The scan is held (a test hook): it reports 3 of 8 MiB at once, recorded with the running jobs
 * PROGRESS_RECORD_MS later; 500 ms after that it reports 5 of 8 MiB (not recorded yet) and is
 * killed.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' DATA_DIR IMAGE_ROOT DISK
 */
import { Engine } from '../../src/engine';
import { PROGRESS_RECORD_MS } from '../../src/engine/jobs';
import type { scanImage } from '../../src/native';

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const [dataDir, imageRoot, disk] = process.argv.slice(-3) as [string, string, string];
  const native = require('../../src/native') as { scanImage: typeof scanImage };
  native.scanImage = async (o) => {
    o.onProgress?.(3 * MiB, 8 * MiB);
    await new Promise((r) => setTimeout(r, PROGRESS_RECORD_MS + 500));
    o.onProgress?.(5 * MiB, 8 * MiB);
    process.kill(process.pid, 'SIGKILL');
    return new Promise(() => {});
  };
  const engine = await Engine.open({ dataDir, imageRoots: [imageRoot], blockSize: 64 * 1024 });
  await engine.waitJob(engine.startSnapshot(disk).id);
  process.stderr.write('the snapshot ended without being killed\n');
  process.exit(1);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
