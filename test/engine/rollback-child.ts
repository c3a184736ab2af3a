/**
 * An engine in a child process, which the parent may start with fewer capabilities than its own
 * (setpriv --bounding-set): asks for one rollback, then one snapshot of the same disk, and prints
 * what became of each as one line of JSON. Capabilities are per thread, and the engine's native
 * work runs on threads of its own, so a process of its own is the one way to run it without one.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' DATA_DIR IMAGE_ROOT DISK SNAPSHOT
 */
import { readFileSync } from 'node:fs';
import { Engine } from '../../src/engine';
import { BlocksnapError } from '../../src/errors';

export interface RollbackChildReport {
  /** CapEff of this process, from /proc/self/status (hex). */
  capEff: string;
  /** The refusal of startRollback itself, or null when it started a job. */
  refused: { code: string; message: string; details: unknown } | null;
  /** The rollback job's end, when one started. */
  job: { state: string; error: { code: string; message: string } | null } | null;
  pendingRollback: unknown;
  /** The snapshot's end, or `refused` when startSnapshot refused it. */
  snapshot: { state: string; error: { code: string; message: string } | null };
}

async function main(): Promise<void> {
  const [dataDir, imageRoot, diskId, snapshotId] = process.argv.slice(-4) as [string, string, string, string];
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  const engine = await Engine.open({ dataDir, imageRoots: [imageRoot] });
  try {
    let refused: RollbackChildReport['refused'] = null;
    let job: RollbackChildReport['job'] = null;
    try {
      const started = engine.startRollback(diskId, snapshotId);
      const done = await engine.waitJob(started.id);
      job = { state: done.state, error: done.error ? { code: done.error.code, message: done.error.message } : null };
    } catch (err) {
      if (!(err instanceof BlocksnapError)) throw err;
      refused = { code: err.code, message: err.message, details: err.details ?? null };
    }
    const pendingRollback = engine.getDisk(diskId).pendingRollback;
    let snapshot: RollbackChildReport['snapshot'];
    try {
      const snap = await engine.waitJob(engine.startSnapshot(diskId).id);
      snapshot = { state: snap.state, error: snap.error ? { code: snap.error.code, message: snap.error.message } : null };
    } catch (err) {
      if (!(err instanceof BlocksnapError)) throw err;
      snapshot = { state: 'refused', error: { code: err.code, message: err.message } };
    }
    const report: RollbackChildReport = { capEff, refused, job, pendingRollback, snapshot };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await engine.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
