/**
 * A daemon's engine in a child process that replicates one snapshot to a directory bucket
 * (dir-store.ts) and stops short of its manifest: once every block is up and the writer lease is
 * held, it prints `holding <jobId>` and waits to be killed, as a daemon killed mid-replication.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' DATA_DIR IMAGE_ROOT BUCKET_DIR SNAPSHOT LEASE_TTL_MS
 */
import { Engine } from '../../src/engine';
import { DEFAULT_LEASE_TIMING } from '../../src/remote/leases';
import type { ObjectStore } from '../../src/remote/object-store';
import { DirStore } from './dir-store';

async function main(): Promise<void> {
  const [dataDir, imageRoot, bucketDir, snapshotId, ttl] = process.argv.slice(-5) as [string, string, string, string, string];
  const dir = new DirStore(bucketDir);
  let jobId = '';
  const store: ObjectStore = Object.assign(Object.create(dir) as DirStore, {
    async put(key: string, body: Buffer): Promise<void> {
      if (key.includes('/manifests/')) {
        process.stdout.write(`holding ${jobId}\n`);
        await new Promise(() => undefined);
      }
      await dir.put(key, body);
    },
  });
  const engine = await Engine.open({
    dataDir, imageRoots: [imageRoot], threads: 1,
    replication: { openStore: () => store, leaseTiming: { ...DEFAULT_LEASE_TIMING, ttlMs: Number(ttl) } },
  });
  jobId = engine.offsite.replication.startReplicate(snapshotId, 'off').id;
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
