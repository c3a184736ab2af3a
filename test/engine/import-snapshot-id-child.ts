/**
 * An engine in a child process importing a stream through a channel that serves its first half
 * and then holds the rest: once the job has recorded the snapshot it carries, the process is
 * SIGKILLed, mid-import.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' DATA_DIR IMAGE_ROOT STREAM_FILE DISK
 */
import { readFileSync } from 'node:fs';
import { Engine } from '../../src/engine';
import type { InChannel } from '../../src/engine/streams';

async function main(): Promise<void> {
  const [dataDir, imageRoot, streamFile, disk] = process.argv.slice(-4) as [string, string, string, string];
  const bytes = readFileSync(streamFile);
  const half = bytes.length >> 1;
  let at = 0;
  const channel: InChannel = {
    async read(max) {
      if (at === half) return new Promise(() => {});
      const end = Math.min(half, at + max);
      const out = bytes.subarray(at, end);
      at = end;
      return out;
    },
    close() {},
  };
  const engine = await Engine.open({ dataDir, imageRoots: [imageRoot], blockSize: 64 * 1024 });
  const job = engine.offsite.streams.startImport(channel, disk);
  // Killed as soon as the half is read, recorded snapshot or not: the parent tells which.
  while (at < half || engine.getJob(job.id).doneBytes === 0) await new Promise((r) => setTimeout(r, 10));
  process.kill(process.pid, 'SIGKILL');
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
