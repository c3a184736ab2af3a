/**
 * A line an off-host job logs about its work carries the job's id, the one its caller was given,
 * as the line of the job's end does. Engines on one in-memory bucket (memory-engine.ts).
 */
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { EngineLogger } from '../../src/engine';
import type { Job } from '../../src/engine/types';
import { finished, snapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';
import { MemoryStore } from './memory-store';
import { isBlockKey, openHost, type Host } from './memory-engine';

interface Line { fields: Record<string, unknown>; msg: string }

async function loggedHost(t: Test, shared: MemoryStore): Promise<{ h: Host; lines: Line[] }> {
  const lines: Line[] = [];
  const keep = (fields: object, msg?: string): void => { lines.push({ fields: fields as Record<string, unknown>, msg: msg ?? '' }); };
  const logger: EngineLogger = { debug() {}, info: keep, warn: keep, error: keep };
  return { h: await openHost(t, shared, { logger }), lines };
}

/** The job ids of the lines with message `msg`. */
function jobIdsOf(lines: Line[], msg: string): unknown[] {
  return lines.filter((l) => l.msg === msg).map((l) => l.fields.jobId);
}

async function replicated(h: Host): Promise<{ snapshotId: string; job: Job }> {
  const d = await h.disk('vm', 4);
  const s = await snapshot(h.engine, d.id);
  const job = await finished(h.engine, h.engine.offsite.replication.startReplicate(s.id, 'off'));
  return { snapshotId: s.id, job };
}

t.test('"snapshot replicated" carries the replication job\'s id', async (t) => {
  const { h, lines } = await loggedHost(t, new MemoryStore());
  const { job } = await replicated(h);
  t.same(jobIdsOf(lines, 'snapshot replicated'), [job.id]);
});

t.test('"restore finished" carries the restore job\'s id', async (t) => {
  const { h, lines } = await loggedHost(t, new MemoryStore());
  const { snapshotId } = await replicated(h);
  const job = await finished(h.engine, h.engine.offsite.remoteRestore.startRestore('off', snapshotId, join(h.images, 'restored.raw')));
  t.same(jobIdsOf(lines, 'restore finished'), [job.id]);
});

t.test('a qcow2 restore\'s line about the blocks it wrote again carries the restore job\'s id', async (t) => {
  const { h, lines } = await loggedHost(t, new MemoryStore());
  const { snapshotId } = await replicated(h);
  rmSync(blockPath(h.dataDir, sha(pattern('vm-0', 64 * 1024))));
  await finished(h.engine, h.engine.startVerify());
  const job = await finished(h.engine, h.engine.offsite.remoteRestore.startRestore('off', snapshotId, join(h.images, 'r.qcow2'), { format: 'qcow2' }));
  t.same(jobIdsOf(lines, 'damaged or missing blocks written again from a remote'), [job.id]);
});

t.test('"remote gc finished" carries the remote gc job\'s id', async (t) => {
  const { h, lines } = await loggedHost(t, new MemoryStore());
  const job = await finished(h.engine, h.engine.offsite.remoteGc.startRemoteGc('off'));
  t.same(jobIdsOf(lines, 'remote gc finished'), [job.id]);
});

t.test('remote verify\'s damage and repair lines carry its job\'s id', async (t) => {
  const shared = new MemoryStore();
  const { h, lines } = await loggedHost(t, shared);
  await replicated(h);
  shared.objects.delete([...shared.objects.keys()].filter(isBlockKey)[0]!);
  const job = await finished(h.engine, h.engine.offsite.remoteVerify.startRemoteVerify('off', undefined, { repair: true }));
  t.same(jobIdsOf(lines, 'remote verify found damaged or missing blocks'), [job.id]);
  t.same(jobIdsOf(lines, 'remote block uploaded again'), [job.id]);
});

t.test('"snapshot imported from remote" carries the import job\'s id', async (t) => {
  const shared = new MemoryStore();
  const { h: a } = await loggedHost(t, shared);
  const { h: b, lines } = await loggedHost(t, shared);
  const { snapshotId } = await replicated(a);
  const target = await b.disk('t', 4);
  const job = await finished(b.engine, b.engine.offsite.remoteRestore.startImport('off', snapshotId, target.id));
  t.same(jobIdsOf(lines, 'snapshot imported from remote'), [job.id]);
});

t.test('a snapshot stream\'s export and import lines carry their jobs\' ids', async (t) => {
  const shared = new MemoryStore();
  const { h: a, lines: aLines } = await loggedHost(t, shared);
  const { h: b, lines: bLines } = await loggedHost(t, shared);
  const d = await a.disk('vm', 4);
  const s = await snapshot(a.engine, d.id);
  const exported = await finished(a.engine, a.engine.offsite.streams.startExport(s.id, join(a.images, 'vm.bsnap')));
  copyFileSync(join(a.images, 'vm.bsnap'), join(b.images, 'vm.bsnap'));
  const target = await b.disk('t', 4);
  const imported = await finished(b.engine, b.engine.offsite.streams.startImport(join(b.images, 'vm.bsnap'), target.id));
  t.same(jobIdsOf(aLines, 'snapshot exported'), [exported.id]);
  t.same(jobIdsOf(bLines, 'snapshot imported from a stream'), [imported.id]);
});
