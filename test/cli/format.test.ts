import t from 'tap';
import { count, details, formatBytes, formatDuration, relativeTime, table, terminalSafe } from '../../src/cli/format';
import { reportError } from '../../src/cli/output';
import { BlocksnapError } from '../../src/errors';
import { ProgressBar, renderProgress } from '../../src/cli/progress';
import { gcView, jobDetails, jobTable, rollbackView, storeStatsView, verifyView } from '../../src/cli/views';
import type { Job } from '../../src/engine/types';

const NOTHING_STRAY = { unreferencedBlocks: 0, pendingFreeBlocks: 0, strayEntries: 0, strayExamples: [], unreadable: [] };
const GC_NOTHING_ELSE = { removedEmptyDirs: 0, strayEntries: 0, strayExamples: [], orphanBlocks: 0, orphanBytes: 0, unremovableEntries: 0, unremovable: [] };

t.test('sizes are IEC with three significant digits', async (t) => {
  const cases: Array<[number, string]> = [
    [0, '0 B'], [1, '1 B'], [1023, '1023 B'], [1024, '1 KiB'], [1536, '1.5 KiB'], [10 * 1024 * 1024, '10 MiB'],
    [100 * 1024 * 1024, '100 MiB'], [4 * 1024 ** 3, '4 GiB'], [1.234 * 1024 ** 3, '1.23 GiB'], [15.55 * 1024 ** 4, '15.6 TiB'],
  ];
  for (const [n, s] of cases) t.equal(formatBytes(n), s, `${n}`);
});

t.test('relative times', async (t) => {
  const now = Date.parse('2025-06-01T12:00:00Z');
  const ago = (s: number): string => relativeTime(new Date(now - s * 1000).toISOString(), now);
  t.equal(ago(2), 'just now');
  t.equal(ago(42), '42 s ago');
  t.equal(ago(180), '3 min ago');
  t.equal(ago(5 * 3600), '5 h ago');
  t.equal(ago(86400), '1 day ago');
  t.equal(ago(3 * 86400), '3 days ago');
  t.equal(ago(90 * 86400), '2025-03-03');
  t.equal(relativeTime(null, now), '-');
});

t.test('durations', async (t) => {
  t.equal(formatDuration(59), '0:59');
  t.equal(formatDuration(3725), '1:02:05');
  t.equal(formatDuration(NaN), '--:--');
});

t.test('tables align columns; right-aligned numbers; no trailing spaces', async (t) => {
  const out = table([{ a: 'x', n: '5 MiB' }, { a: 'longer', n: '10 GiB' }], [
    { header: 'name', value: (r) => r.a },
    { header: 'size', value: (r) => r.n, align: 'right' },
  ]);
  t.equal(out, ['NAME      SIZE', 'x        5 MiB', 'longer  10 GiB'].join('\n'));
});

t.test('details align the values', async (t) => {
  t.equal(details([['id', 'd-1'], ['format', 'raw']]), 'id:     d-1\nformat: raw');
});

t.test('control characters in values are written out, so a terminal never acts on them', async (t) => {
  // Text an older daemon took, a path, or a message quoting one, may hold them.
  t.equal(details([['description', 'x\u001b[31mred\nline2\ttab\u009b2J']]), 'description: x\\x1b[31mred\\nline2\\ttab\\x9b2J');
  t.equal(table([{ p: '/img/a\nb.raw' }], [{ header: 'path', value: (r) => r.p }]), 'PATH\n/img/a\\nb.raw');
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => { written.push(s); return true; }) as typeof process.stderr.write;
  try {
    reportError(new BlocksnapError('ImageNotFound', 'no image at /img/\u001b[2J.raw'), false);
  } finally {
    process.stderr.write = write;
  }
  t.same(written, ['blocksnap: no image at /img/\\x1b[2J.raw [ImageNotFound]\n'], 'and in an error message');
  t.equal(terminalSafe('run 1 failed: /img/\u001b]0;x\u0007.raw\nrun 2\tok'), 'run 1 failed: /img/\\x1b]0;x\\x07.raw\nrun 2\tok', 'and in any human output, line breaks and tabs kept');
});

/** A rollback job that took two seconds and succeeded with `result`. */
function rollbackJob(result: object): Job {
  return {
    id: 'j-0000000000000001', kind: 'rollback', state: 'succeeded', diskId: 'd-1', snapshotId: 's-1', target: null, doneBytes: 0, totalBytes: 0,
    progressUnit: 'bytes', startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:00:02.000Z', result, error: null,
  };
}

/** A copy-on-write disk's rollback result but for what it discarded. */
const COW_ROLLBACK = { diskId: 'd-1', snapshotId: 's-1', sizeBytes: 0, previousSizeBytes: 0, bytesWritten: 0, blocksWritten: 0, holesPunched: 0, blocksUnchanged: 0, newImage: false, discardedSinceSnapshotId: 's-2' };

t.test('a rollback says what it did: in place, the blocks that differed; qcow2, the new image it wrote', async (t) => {
  const base = { diskId: 'd-1', snapshotId: 's-1', sizeBytes: 0, previousSizeBytes: 0, bytesWritten: 8 * 1024 * 1024 };
  t.equal(rollbackView(rollbackJob({ ...base, blocksWritten: 2, holesPunched: 1, blocksUnchanged: 5, newImage: false })),
    'Rolled back disk d-1 to snapshot s-1 in 0:02: 2 blocks written (8 MiB), 1 hole punched, 5 unchanged.');
  t.equal(rollbackView(rollbackJob({ ...base, blocksWritten: 2, holesPunched: 0, blocksZeroed: 1, blocksUnchanged: 5, newImage: false })),
    'Rolled back disk d-1 to snapshot s-1 in 0:02: 2 blocks written (8 MiB), 0 holes punched, 1 block zeroed (the filesystem cannot punch holes), 5 unchanged.');
  t.equal(rollbackView(rollbackJob({ ...base, blocksWritten: 2, holesPunched: 0, blocksUnchanged: 6, newImage: true, blocksFromBacking: 0, clustersZeroed: 0 })),
    'Rolled back disk d-1 to snapshot s-1 in 0:02: a new qcow2 image of the snapshot replaced the disk file: 2 blocks written (8 MiB), 6 zero blocks.');
});

t.test('a qcow2 rollback of an overlay says which blocks it left to the backing file and what it zeroed over it', async (t) => {
  const base = { diskId: 'd-1', snapshotId: 's-1', sizeBytes: 0, previousSizeBytes: 0, bytesWritten: 4 * 1024 * 1024, holesPunched: 0, newImage: true };
  t.equal(rollbackView(rollbackJob({ ...base, blocksWritten: 1, blocksUnchanged: 73, blocksFromBacking: 63, clustersZeroed: 16 })),
    'Rolled back disk d-1 to snapshot s-1 in 0:02: a new qcow2 image of the snapshot replaced the disk file: 1 block written (4 MiB), ' +
    '63 blocks left to the backing file, which holds the same data, 10 zero blocks; 16 clusters hide the backing file\'s data with zeros.');
  t.equal(rollbackView(rollbackJob({ ...base, blocksWritten: 1, blocksUnchanged: 6 })),
    'Rolled back disk d-1 to snapshot s-1 in 0:02: a new qcow2 image of the snapshot replaced the disk file: 1 block written (4 MiB), 6 zero blocks.',
    'a result of an earlier version, without the backing counts');
});

t.test('a copy-on-write rollback says its overlay was replaced, and how much written since its base went with it', async (t) => {
  t.equal(rollbackView(rollbackJob({ ...COW_ROLLBACK, discardedBytes: 12 * 1024 ** 2 })),
    'Rolled back copy-on-write disk d-1 to snapshot s-1 in 0:02: its overlay was replaced by an empty one over the snapshot, discarding the 12 MiB written since snapshot s-2.');
  t.equal(rollbackView(rollbackJob({ ...COW_ROLLBACK, discardedBytes: 0 })),
    'Rolled back copy-on-write disk d-1 to snapshot s-1 in 0:02: its overlay was replaced by an empty one over the snapshot; nothing had been written since snapshot s-2.');
});

t.test('a copy-on-write rollback whose layer map could not be read says how much it discarded is unknown', async (t) => {
  t.equal(rollbackView(rollbackJob({ ...COW_ROLLBACK, discardedBytes: null })),
    'Rolled back copy-on-write disk d-1 to snapshot s-1 in 0:02: its overlay was replaced by an empty one over the snapshot, ' +
    'discarding the writes made since snapshot s-2 (how much is unknown: a layer map could not be read).');
});

t.test('a rollback across a resize says the disk\'s size changed back, and what a shrink cut off', async (t) => {
  const r = { diskId: 'd-1', snapshotId: 's-1', bytesWritten: 0, blocksWritten: 0, holesPunched: 0, blocksUnchanged: 64, newImage: false };
  t.equal(rollbackView(rollbackJob({ ...r, sizeBytes: 256 * 1024 ** 2, previousSizeBytes: 300 * 1024 ** 2 })),
    'Rolled back disk d-1 to snapshot s-1 in 0:02: 0 blocks written (0 B), 0 holes punched, 64 unchanged. ' +
    'The disk\'s size went from 300 MiB (314572800 bytes) back to the snapshot\'s 256 MiB (268435456 bytes); what lay past byte 268435456 is gone.');
  t.equal(rollbackView(rollbackJob({ ...r, sizeBytes: 256 * 1024 ** 2, previousSizeBytes: 128 * 1024 ** 2 })),
    'Rolled back disk d-1 to snapshot s-1 in 0:02: 0 blocks written (0 B), 0 holes punched, 64 unchanged. ' +
    'The disk\'s size went from 128 MiB (134217728 bytes) back to the snapshot\'s 256 MiB (268435456 bytes).');
});

t.test('the progress line shows bytes, rate and ETA, and fits the width', async (t) => {
  const line = renderProgress({ label: 'snapshot vm1', done: 512 * 1024 ** 2, total: 1024 ** 3, rate: 128 * 1024 ** 2, width: 100 });
  t.match(line, /^snapshot vm1 \[#+-+\]  50%  512 MiB\/1 GiB  128 MiB\/s  ETA 0:04$/);
  t.ok(line.length < 100);
  t.match(renderProgress({ label: 'x', done: 0, total: 0, rate: NaN, width: 80 }), /0%  0 B\/0 B  -$/);
});

t.test('the progress line of a job of two passes says which pass runs', async (t) => {
  const line = renderProgress({ label: 'rollback vm1', done: 300 * 1024 ** 2, total: 540 * 1024 ** 2, rate: NaN, phase: 'writing', width: 100 });
  t.match(line, /^rollback vm1 \[#+-+\]  55% writing  300 MiB\/540 MiB  -$/);
});

t.test('job show and job list say which pass a running rollback is in', async (t) => {
  const running: Job = { ...rollbackJob({}), state: 'running', finishedAt: null, result: null, doneBytes: 100, totalBytes: 400, phase: 'comparing' };
  t.match(jobDetails(running), /^ *phase: +comparing$/m);
  t.match(jobTable([running]), /25% of 400 B, comparing/);
  t.notMatch(jobDetails(rollbackJob({})), /phase/, 'a job without a phase shows none');
});

t.test('counts of one are singular in human output', async (t) => {
  t.equal(count(1, 'block'), '1 block');
  t.equal(count(0, 'block'), '0 blocks');
  t.equal(verifyView({ checkedBlocks: 1, problems: [], awaitingRepair: 0, ...NOTHING_STRAY }), 'Checked 1 block: all intact.');
  t.equal(gcView({ ...GC_NOTHING_ELSE, removedBlocks: 1, removedBytes: 4096, removedTempFiles: 1, keptBlocks: 2 }),
    'Removed 1 unreferenced block (4 KiB) and 1 temp file; kept 2 blocks.');
});

t.test('gc says which of the blocks it removed a crash left', async (t) => {
  t.equal(gcView({ ...GC_NOTHING_ELSE, removedBlocks: 3, removedBytes: 3 << 20, orphanBlocks: 2, orphanBytes: 2 << 20, removedTempFiles: 0, keptBlocks: 1 }),
    'Removed 3 unreferenced blocks (3 MiB), 2 of them (2 MiB) left by a crash and 0 temp files; kept 1 block.');
});

t.test('gc counts the empty fan-out directories it removed, when there were any', async (t) => {
  t.equal(gcView({ ...GC_NOTHING_ELSE, removedBlocks: 0, removedBytes: 0, removedTempFiles: 0, removedEmptyDirs: 68, keptBlocks: 0 }),
    'Removed 0 unreferenced blocks (0 B), 0 temp files and 68 empty fan-out directories; kept 0 blocks.');
});

t.test('gc lists the entries it could not remove, each with its path, and says to remove them by hand', async (t) => {
  const out = gcView({
    ...GC_NOTHING_ELSE, removedBlocks: 0, removedBytes: 0, removedTempFiles: 0, keptBlocks: 0,
    unremovableEntries: 1, unremovable: [{ path: '/d/blocks/abc/abcd', code: 'ENOTEMPTY', message: 'a directory with entries in it (ENOTEMPTY)' }],
  });
  t.match(out, /Could not remove 1 entry:\n {2}\/d\/blocks\/abc\/abcd: a directory with entries in it \(ENOTEMPTY\)/);
  t.match(out, /Remove these by hand/);
});

t.test('gc names the first stray entries and counts the rest', async (t) => {
  const out = gcView({ ...GC_NOTHING_ELSE, removedBlocks: 0, removedBytes: 0, removedTempFiles: 0, keptBlocks: 0, strayEntries: 12, strayExamples: ['/d/blocks/zzz'] });
  t.match(out, /12 stray entries under the store/);
  t.match(out, /\n {2}\/d\/blocks\/zzz\n {2}… and 11 more$/);
});

t.test('verify counts the block files store gc would remove', async (t) => {
  t.match(verifyView({ checkedBlocks: 1, problems: [], awaitingRepair: 0, ...NOTHING_STRAY, unreferencedBlocks: 4 }),
    /^Checked 1 block: all intact\.\n4 block files no snapshot references .*store gc removes them\.$/);
});

t.test('verify does not lay freed block files waiting for the sweep to a crash', async (t) => {
  const out = verifyView({ checkedBlocks: 1, problems: [], awaitingRepair: 0, ...NOTHING_STRAY, pendingFreeBlocks: 2 });
  t.match(out, /^Checked 1 block: all intact\.\n2 freed block files not unlinked yet: the sweep unlinks them, and store stats names any it could not\.$/);
  t.notMatch(out, /crash/);
});

t.test('store stats lists the freed block files the sweep could not unlink', async (t) => {
  const out = storeStatsView({
    blocks: 1, bytes: 1, pendingFreeBlocks: 2, blockSize: 4 << 20, dataDir: '/d',
    unremovable: [{ path: '/d/blocks/abc/abcd', code: 'EPERM', message: 'not permitted (EPERM)' }],
  });
  t.match(out, /pending free: 2 blocks \(the sweep could not unlink 1, below\)/);
  t.match(out, /could not unlink:\n {2}\/d\/blocks\/abc\/abcd: not permitted \(EPERM\)/);
  t.match(out, /Remove these by hand/);
});

t.test('verify names the disks of a damaged block and says how to repair it', async (t) => {
  const out = verifyView({
    checkedBlocks: 3, awaitingRepair: 1, ...NOTHING_STRAY,
    problems: [{ digest: 'ab'.repeat(32), reason: 'digest-mismatch', message: 'bad', snapshots: ['s-1'], disks: ['d-1'], repairable: true }],
  });
  t.match(out, /1 DAMAGED/);
  t.match(out, /d-1/, 'the disk whose snapshots reference the block');
  t.match(out, /To repair: snapshot a disk whose image still holds the block's content/);
  t.match(out, /run store verify again/);
});

t.test('a progress bar on a terminal that reports 0 columns is drawn 80 wide, not cut to 20', async (t) => {
  let written = '';
  const stream = { columns: 0, write: (s: string) => { written += s; return true; } } as unknown as NodeJS.WriteStream;
  const bar = new ProgressBar(stream, 'snapshot vm1');
  bar.update(512 * 1024 * 1024, 1024 * 1024 * 1024, 1_000);
  const line = written.slice(written.lastIndexOf('\x1b[2K') + 4);
  t.match(line, /^snapshot vm1 \[#+-+\]  50%  512 MiB\/1 GiB/);
  t.ok(line.length > 40 && line.length < 80, `${line.length} columns`);
});

t.test('a narrow terminal loses the bar, then the end of the label, before rate and ETA', async (t) => {
  const at = (width: number, label = 'snapshot vm1'): string =>
    renderProgress({ label, done: 512 * 1024 ** 2, total: 1024 ** 3, rate: 128 * 1024 ** 2, width });
  t.equal(at(60), 'snapshot vm1  50%  512 MiB/1 GiB  128 MiB/s  ETA 0:04');
  t.equal(at(50), 'snapshot  50%  512 MiB/1 GiB  128 MiB/s  ETA 0:04');
  for (const width of [40, 50, 60, 80]) t.ok(at(width).length < width, `fits ${width} columns`);
  t.match(at(46), /128 MiB\/s  ETA 0:04$/, 'rate and ETA at 46 columns');
});

t.test('with TERM=dumb the bar writes no escape codes', async (t) => {
  let written = '';
  const stream = { columns: 80, write: (s: string) => { written += s; return true; } } as unknown as NodeJS.WriteStream;
  const term = process.env.TERM;
  process.env.TERM = 'dumb';
  t.teardown(() => { if (term === undefined) delete process.env.TERM; else process.env.TERM = term; });
  const bar = new ProgressBar(stream, 'snapshot vm1');
  bar.update(512 * 1024 * 1024, 1024 * 1024 * 1024, 1_000);
  bar.update(1024 * 1024 * 1024, 1024 * 1024 * 1024, 2_000);
  bar.clear();
  t.notMatch(written, /\x1b/);
  t.match(written, /^\rsnapshot vm1 \[#+-+\]  50%/);
  t.match(written, /\r {40,}\r$/, 'cleared with spaces');
});
