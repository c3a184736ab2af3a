/** Human renderings of the engine's objects, one function per shape. */
import type {
  CatalogAccepted, CatalogBackup, ChainSummary, CloneResult, Disk, FlattenResult, GcResult, Job, RollbackResult, Snapshot, SnapshotConsistency, StoreStats, VerifyResult,
} from '../engine/types';
import type { UnremovableEntry } from '../store/block-store';
import { count, details, formatBytes, formatDuration, formatRate, percent, relativeTime, table } from './format';

/** A daemon from before `running` was said reports only unfinished rollbacks: those read as interrupted. */
function rollbackNote(d: Disk): string {
  if (!d.pendingRollback) return '';
  return d.pendingRollback.running === true ? '  (rollback running)' : '  (rollback interrupted)';
}

export function diskTable(disks: Disk[]): string {
  if (disks.length === 0) return 'No disks. Register one with: blocksnap disk add PATH';
  return table(disks, [
    { header: 'id', value: (d) => d.id },
    { header: 'name', value: (d) => d.name },
    { header: 'format', value: (d) => d.format },
    { header: 'size', value: (d) => formatBytes(d.sizeBytes), align: 'right' },
    { header: 'snapshots', value: (d) => String(d.snapshotCount), align: 'right' },
    { header: 'created', value: (d) => relativeTime(d.createdAt) },
    { header: 'path', value: (d) => d.path + rollbackNote(d) },
  ]);
}

/** "raw (detected)" or "raw (--format)": a disk detected as raw refuses an image that turned qcow2, one given as raw does not. */
function formatText(d: Disk): string {
  if (d.formatSource === 'detected') return `${d.format} (detected)`;
  if (d.formatSource === 'given') return `${d.format} (--format)`;
  return d.format;
}

export function diskDetails(d: Disk): string {
  const pairs: Array<[string, string]> = [
    ['id', d.id],
    ['name', d.name],
    ['path', d.path],
    ...(d.givenPath ? [['given path', `${d.givenPath} (leads to path; checked before every snapshot and rollback)`] as [string, string]] : []),
    ['format', formatText(d)],
    ['size', `${exactSize(d.sizeBytes)} as last recorded (add, snapshot, rollback or relocate)`],
    ['snapshots', String(d.snapshotCount)],
    ['head', d.headSnapshotId ?? '-'],
    ['created', `${d.createdAt} (${relativeTime(d.createdAt)})`],
  ];
  // Said only when it differs: the image was resized since, or a rollback was abandoned midway.
  // Absent from disks of earlier daemons.
  if (d.imageBytes === null) pairs.push(['image size', 'unknown (the image cannot be read)']);
  else if (d.imageBytes !== undefined && d.imageBytes !== d.sizeBytes) pairs.push(['image size', `${exactSize(d.imageBytes)} now`]);
  if (d.cow) {
    pairs.push(['origin', d.cow.originSnapshotId], ['base', d.cow.baseSnapshotId],
      ['overlay', `${formatBytes(d.cow.overlayBytes)} in ${d.cow.layers.length} layer(s)`],
      ['written', d.cow.writtenBytes === null ? 'unknown (a layer map cannot be read)'
        : `${formatBytes(d.cow.writtenBytes)} since the base snapshot`]);
  }
  const p = d.pendingRollback;
  if (p?.running === true) {
    pairs.push(['rollback', `rollback to ${p.snapshotId} running (job ${p.jobId})`]);
  } else if (p) {
    pairs.push(['rollback', `INTERRUPTED rollback to ${p.snapshotId} (job ${p.jobId}); rerun it to finish (blocksnap rollback ${d.name} ${p.snapshotId}), or leave the image as it is now (blocksnap rollback ${d.name} --abandon)`]);
  }
  return details(pairs);
}

export function snapshotTable(snaps: Snapshot[]): string {
  if (snaps.length === 0) return 'No snapshots.';
  return table(snaps, [
    { header: 'id', value: (s) => s.id },
    { header: 'name', value: (s) => s.name },
    { header: 'disk', value: (s) => s.diskId },
    { header: 'status', value: (s) => (s.progress ? `creating ${s.progress.percent}% ${formatRate(s.progress.bytesPerSecond)}` : s.status) },
    { header: 'type', value: (s) => s.type },
    { header: 'logical', value: (s) => formatBytes(s.logicalBytes), align: 'right' },
    { header: 'new', value: (s) => formatBytes(s.newBytes), align: 'right' },
    { header: 'unique', value: (s) => formatBytes(s.uniqueBytes), align: 'right' },
    { header: 'created', value: (s) => relativeTime(s.createdAt) },
    { header: 'consistency', value: (s) => s.consistency ?? '-' },
  ]);
}

// A Record, so that a consistency the engine gains cannot go without its own explanation here.
const CONSISTENCY_TEXT: Record<SnapshotConsistency, string> = {
  offline: 'offline (no VM was writing the image)',
  crash: 'crash-consistent (a VM was writing the image)',
  'point-in-time': 'point-in-time (a copy-on-write disk, taken between two of its writes)',
};

/** A value from a newer daemon than this client is shown as it came. */
export function consistencyText(c: SnapshotConsistency): string {
  return Object.prototype.hasOwnProperty.call(CONSISTENCY_TEXT, c) ? CONSISTENCY_TEXT[c] : c;
}

export function snapshotDetails(s: Snapshot): string {
  const pairs: Array<[string, string]> = [
    ['id', s.id],
    ['name', s.name],
    ['disk', s.diskId],
    ['status', s.status],
    ['type', s.type],
    ['parent', s.parentId ?? '-'],
    ['created', `${s.createdAt} (${relativeTime(s.createdAt)})`],
    ['completed', s.completedAt ?? '-'],
    ['size', `${exactSize(s.sizeBytes)}, ${count(s.blockCount, 'block')} of ${formatBytes(s.blockSize)}`],
    ['logical', formatBytes(s.logicalBytes)],
    ['changed', count(s.changedBlocks, 'block')],
    ['new', formatBytes(s.newBytes)],
    ['unique', formatBytes(s.uniqueBytes)],
  ];
  if (s.consistency) pairs.push(['consistency', consistencyText(s.consistency)]);
  for (const w of s.warnings ?? []) pairs.push(['warning', `${w.message} [${w.code}]`]);
  if (s.description !== '') pairs.splice(2, 0, ['description', s.description]);
  if (s.progress) {
    const p = s.progress;
    pairs.push(['progress', `${p.percent}% (${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}, ${formatRate(p.bytesPerSecond)})`]);
  }
  const tags = Object.entries(s.tags ?? {});
  if (tags.length > 0) pairs.push(['tags', tags.map(([k, v]) => `${k}=${v}`).join(' ')]);
  if (s.groupId) pairs.push(['group', s.groupId]);
  if (s.error) pairs.push(['error', `${s.error.message} [${s.error.code}]`]);
  return details(pairs);
}

function amount(j: Job, n: number): string {
  return j.progressUnit === 'blocks' ? count(n, 'block') : formatBytes(n);
}

function jobProgress(j: Job): string {
  if (j.state === 'running') return `${percent(j.doneBytes, j.totalBytes)} of ${amount(j, j.totalBytes)}${j.phase ? `, ${j.phase}` : ''}`;
  return j.error ? j.error.code : `done in ${elapsed(j)}`;
}

export function jobTable(jobs: Job[]): string {
  if (jobs.length === 0) return 'No jobs.';
  return table(jobs, [
    { header: 'id', value: (j) => j.id },
    { header: 'kind', value: (j) => j.kind },
    { header: 'state', value: (j) => j.state },
    { header: 'disk', value: (j) => j.diskId ?? '-' },
    { header: 'snapshot', value: (j) => j.snapshotId ?? '-' },
    { header: 'progress', value: jobProgress },
    { header: 'started', value: (j) => relativeTime(j.startedAt) },
  ]);
}

function elapsed(j: Job): string {
  const end = j.finishedAt !== null ? Date.parse(j.finishedAt) : Date.now();
  return formatDuration((end - Date.parse(j.startedAt)) / 1000);
}

export function jobDetails(j: Job): string {
  const pairs: Array<[string, string]> = [
    ['id', j.id],
    ['kind', j.kind],
    ['state', j.state],
    ['disk', j.diskId ?? '-'],
    ['snapshot', j.snapshotId ?? '-'],
  ];
  if (j.target !== null) pairs.push(['target', j.target]);
  pairs.push(
    ['progress', `${amount(j, j.doneBytes)} of ${amount(j, j.totalBytes)} (${percent(j.doneBytes, j.totalBytes)})`],
    ...(j.phase !== undefined ? [['phase', j.phase] as [string, string]] : []),
    ['started', `${j.startedAt} (${relativeTime(j.startedAt)})`],
    // An interrupted job's end is when it was last seen running: the daemon stopped soon after.
    [j.state === 'interrupted' ? 'last seen' : 'finished', j.finishedAt ?? '-'],
    ['elapsed', elapsed(j)],
  );
  if (j.error) pairs.push(['error', `${j.error.message} [${j.error.code}]`]);
  return details(pairs);
}

export function chainTable(chains: ChainSummary[]): string {
  if (chains.length === 0) return 'No disks.';
  return table(chains, [
    { header: 'disk', value: (c) => c.diskId },
    { header: 'name', value: (c) => c.diskName },
    { header: 'snapshots', value: (c) => String(c.snapshots), align: 'right' },
    { header: 'logical', value: (c) => formatBytes(c.logicalBytes), align: 'right' },
    { header: 'stored', value: (c) => formatBytes(c.storedBytes), align: 'right' },
    { header: 'blocks', value: (c) => String(c.storedBlocks), align: 'right' },
  ]);
}

export function storeStatsView(s: StoreStats): string {
  const stuck = s.unremovable ?? [];
  const pending = stuck.length > 0
    ? `${count(s.pendingFreeBlocks, 'block')} (the sweep could not unlink ${stuck.length}, below)`
    : count(s.pendingFreeBlocks, 'block');
  return details([
    ['data dir', s.dataDir],
    ['blocks', `${s.blocks} referenced`],
    ['stored', `${formatBytes(s.bytes)} (${s.bytes} bytes) referenced`],
    ['block size', formatBytes(s.blockSize)],
    ['pending free', pending],
  ]) + (stuck.length > 0 ? `\nFreed block files the sweep could not unlink:\n${unremovableLines(stuck)}\n${REMOVE_BY_HAND}` : '') +
    heldLine(s.catalogHold);
}

/** The reason deletions are held, as the daemon gives it. */
function heldLine(hold: { message: string } | null | undefined): string {
  return hold ? `\nDELETIONS HELD: ${hold.message}.` : '';
}

export function catalogBackupView(r: CatalogBackup): string {
  return `Backed up the catalog to ${r.path} (${formatBytes(r.bytes)}, generation ${r.generation}).`;
}

export function catalogAcceptedView(r: CatalogAccepted): string {
  if (!r.accepted) return `The catalog is the block store's already (generation ${r.generation}); nothing was changed.`;
  return `Accepted the catalog as the block store's (it was ${r.previousHold}; now generation ${r.generation}): deletions resume, and store gc removes every block it does not reference.`;
}

const REMOVE_BY_HAND = 'Remove these by hand (a directory with its content; chattr -i first for an immutable file), then run store gc: ' +
  'until then they hold their space, and nothing else is held back.';

function unremovableLines(entries: UnremovableEntry[]): string {
  return entries.map((e) => `  ${e.path}: ${e.message}`).join('\n');
}

function strayLines(n: number, examples: string[]): string {
  const more = n > examples.length ? `\n  … and ${n - examples.length} more` : '';
  return `${count(n, 'stray entry', 'stray entries')} under the store (no block's; left alone, remove them by hand):\n` +
    `${examples.map((p) => `  ${p}`).join('\n')}${more}`;
}

export function gcView(r: GcResult): string {
  const orphans = (r.orphanBlocks ?? 0) > 0 ? `, ${r.orphanBlocks} of them (${formatBytes(r.orphanBytes)}) left by a crash` : '';
  const dirs = (r.removedEmptyDirs ?? 0) > 0 ? ` and ${count(r.removedEmptyDirs, 'empty fan-out directory', 'empty fan-out directories')}` : '';
  const temps = count(r.removedTempFiles, 'temp file');
  const lines = [`Removed ${count(r.removedBlocks, 'unreferenced block')} (${formatBytes(r.removedBytes)})${orphans}${dirs ? ', ' : ' and '}${temps}${dirs}; kept ${count(r.keptBlocks, 'block')}.`];
  if ((r.unremovableEntries ?? 0) > 0) {
    const more = r.unremovableEntries > r.unremovable.length ? `\n  … and ${r.unremovableEntries - r.unremovable.length} more (see the daemon's log)` : '';
    lines.push(`Could not remove ${count(r.unremovableEntries, 'entry', 'entries')}:\n${unremovableLines(r.unremovable)}${more}\n${REMOVE_BY_HAND}`);
  }
  if ((r.strayEntries ?? 0) > 0) lines.push(strayLines(r.strayEntries, r.strayExamples));
  return lines.join('\n');
}

export function verifyView(r: VerifyResult): string {
  const survey: string[] = [];
  if ((r.unreferencedBlocks ?? 0) > 0) survey.push(`${count(r.unreferencedBlocks, 'block file')} no snapshot references and no delete freed (left by a crash, unless a snapshot running meanwhile commits them): store gc removes them.`);
  if ((r.pendingFreeBlocks ?? 0) > 0) survey.push(`${count(r.pendingFreeBlocks, 'freed block file')} not unlinked yet: the sweep unlinks them, and store stats names any it could not.`);
  if ((r.strayEntries ?? 0) > 0) survey.push(strayLines(r.strayEntries, r.strayExamples));
  if ((r.unreadable ?? []).length > 0) survey.push(`Could not read:\n${unremovableLines(r.unreadable)}\nTheir blocks were not listed; give the daemon's user back access to them.`);
  const tail = (survey.length > 0 ? `\n${survey.join('\n')}` : '') + heldLine(r.catalogHold);
  if (r.problems.length === 0) return `Checked ${count(r.checkedBlocks, 'block')}: all intact.${tail}`;
  const rows = table(r.problems, [
    { header: 'block', value: (p) => p.digest },
    { header: 'problem', value: (p) => p.reason },
    { header: 'snapshots', value: (p) => (p.snapshots.length > 0 ? p.snapshots.join(',') : '-') },
    { header: 'disks', value: (p) => (p.disks?.length ? p.disks.join(',') : '-') },
    { header: 'detail', value: (p) => p.message },
  ]);
  const repair = r.problems.some((p) => p.repairable !== false)
    ? '\nTo repair: snapshot a disk whose image still holds the block\'s content (the disks above, if that part of the image has not changed ' +
      'since), or import a stream of one of the snapshots above exported before the damage (it mends that snapshot in place); ' +
      'either writes the block again, and the snapshots above restore again. ' +
      'Then run store verify again to confirm.'
    : '';
  return `Checked ${count(r.checkedBlocks, 'block')}: ${r.problems.length} DAMAGED.\n${rows}${repair}${tail}`;
}

export function cloneView(r: CloneResult): string {
  return `Cloned snapshot ${r.snapshotId} to ${r.path} (${formatBytes(r.sizeBytes)} ${r.format}, ${formatBytes(r.bytesWritten)} written).`;
}

export function flattenView(r: FlattenResult): string {
  return `Flattened disk ${r.diskId} to ${r.path} (${formatBytes(r.sizeBytes)} ${r.format}, ${formatBytes(r.bytesWritten)} written).`;
}

export function rollbackView(j: Job): string {
  const r = j.result as RollbackResult | null;
  if (r === null || typeof r !== 'object') return `Rolled back disk ${j.diskId} to snapshot ${j.snapshotId}.`;
  if (r.discardedSinceSnapshotId !== undefined) return `Rolled back copy-on-write disk ${r.diskId} to snapshot ${r.snapshotId} in ${elapsed(j)}: ${overlayDiscarded(r)}${resized(r)}`;
  const done = `Rolled back disk ${r.diskId} to snapshot ${r.snapshotId} in ${elapsed(j)}: `;
  const what = r.newImage
    ? newImageCounts(r)
    : `${count(r.blocksWritten, 'block')} written (${formatBytes(r.bytesWritten)}), ${count(r.holesPunched, 'hole')} punched, ${zeroFilled(r)}${r.blocksUnchanged} unchanged.`;
  return `${done}${what}${resized(r)}`;
}

/** Where the filesystem cannot punch holes, the blocks that had to become zeros were written as zeros instead: they take space. */
function zeroFilled(r: RollbackResult): string {
  const n = r.blocksZeroed ?? 0;
  return n > 0 ? `${count(n, 'block')} zeroed (the filesystem cannot punch holes), ` : '';
}

/** A copy-on-write disk's rollback writes nothing: it drops the overlay, and with it the writes since the disk's base. */
function overlayDiscarded(r: RollbackResult): string {
  const since = `since snapshot ${r.discardedSinceSnapshotId}`;
  const replaced = 'its overlay was replaced by an empty one over the snapshot';
  if (r.discardedBytes === null || r.discardedBytes === undefined) return `${replaced}, discarding the writes made ${since} (how much is unknown: a layer map could not be read).`;
  if (r.discardedBytes === 0) return `${replaced}; nothing had been written ${since}.`;
  return `${replaced}, discarding the ${formatBytes(r.discardedBytes)} written ${since}.`;
}

/**
 * A qcow2 rollback writes a new image: what went into it, not a difference. Zero blocks are not
 * called unallocated: over the backing file's data they are zero clusters, or in a v2 image
 * allocated clusters. Results of earlier versions have no backing counts (their blocksUnchanged
 * were the zero blocks).
 */
function newImageCounts(r: RollbackResult): string {
  const fromBacking = r.blocksFromBacking ?? 0;
  const backing = fromBacking > 0 ? `, ${count(fromBacking, 'block')} left to the backing file, which holds the same data` : '';
  const zeroed = (r.clustersZeroed ?? 0) > 0 ? `; ${count(r.clustersZeroed!, 'cluster')} hide the backing file's data with zeros` : '';
  return `a new qcow2 image of the snapshot replaced the disk file: ${count(r.blocksWritten, 'block')} written ` +
    `(${formatBytes(r.bytesWritten)})${backing}, ${count(r.blocksUnchanged - fromBacking, 'zero block')}${zeroed}.`;
}

/**
 * An image resized since the snapshot is cut or extended to the snapshot's size: the guest's disk
 * changes size. In exact bytes: a resize of a few bytes rounds to no change at all.
 */
function resized(r: RollbackResult): string {
  // Results of versions before the field have no previous size.
  if (typeof r.previousSizeBytes !== 'number' || r.previousSizeBytes === r.sizeBytes) return '';
  const cut = r.previousSizeBytes > r.sizeBytes ? `; what lay past byte ${r.sizeBytes} is gone` : '';
  return ` The disk's size went from ${exactSize(r.previousSizeBytes)} back to the snapshot's ${exactSize(r.sizeBytes)}${cut}.`;
}

/** A size with its exact byte count beside it, unless it is a count of bytes already. */
function exactSize(bytes: number): string {
  return bytes < 1024 ? formatBytes(bytes) : `${formatBytes(bytes)} (${bytes} bytes)`;
}
