/** Human-readable output of the remote, replication and stream commands (--json prints the objects). */
import type {
  ExportResult, ImportResult, Remote, RemoteCheck, RemoteGcResult, RemoteSnapshotEntry, RemoteVerifyResult, ReplicateResult, RestoreResult,
} from '../engine/offsite-types';
import { count, details, formatBytes, table } from './format';

export function remoteTable(remotes: Remote[]): string {
  if (remotes.length === 0) return 'No remotes.';
  return table(remotes, [
    { header: 'name', value: (r) => r.name },
    { header: 'endpoint', value: (r) => r.endpoint },
    { header: 'bucket', value: (r) => r.bucket },
    { header: 'prefix', value: (r) => r.prefix || '-' },
  ]);
}

export function remoteDetails(r: Remote): string {
  return details([
    ['name', r.name], ['endpoint', r.endpoint], ['bucket', r.bucket], ['prefix', r.prefix || '-'], ['region', r.region],
    ['credentials', `${r.credentialsFile} (read by the daemon)`], ['added', r.createdAt],
  ]);
}

export function remoteCheckView(c: RemoteCheck): string {
  return `Remote ${c.name} is reachable and ${c.bucket} is writable (probe round trip ${c.latencyMs} ms).`;
}

/** The snapshots on `remote`; damaged manifests as rows of their own, explained below the table. */
export function remoteSnapshotTable(snaps: RemoteSnapshotEntry[], remote: string): string {
  if (snaps.length === 0) return 'No snapshots on this remote.';
  const rows = table(snaps, [
    { header: 'id', value: (s) => s.id },
    { header: 'disk', value: (s) => s.diskName ?? s.diskId },
    { header: 'name', value: (s) => (s.damaged === null ? s.name : `DAMAGED (${s.damaged.code})`) },
    { header: 'created', value: (s) => s.createdAt ?? '-' },
    { header: 'size', value: (s) => (s.sizeBytes === null ? '-' : formatBytes(s.sizeBytes)), align: 'right' },
    { header: 'data', value: (s) => (s.logicalBytes === null ? '-' : formatBytes(s.logicalBytes)), align: 'right' },
    { header: 'from host', value: (s) => s.host ?? '-' },
  ]);
  const damaged = snaps.filter((s) => s.damaged !== null);
  if (damaged.length === 0) return rows;
  return [
    rows,
    '',
    `${count(damaged.length, 'manifest')} cannot be read: ${damaged.length === 1 ? 'that snapshot' : 'those snapshots'} cannot be restored, and remote gc deletes nothing while any is there.`,
    ...damaged.map((s) => `  ${s.id}: ${s.damaged!.message}`),
    `Delete a damaged one with: blocksnap remote delete ${remote} ${damaged[0]!.id} --force`,
  ].join('\n');
}

export function replicateView(r: ReplicateResult): string {
  const lines = [
    `Replicated ${r.replicated.length} snapshot(s) to ${r.remote}${r.alreadyPresent.length ? ` (${r.alreadyPresent.length} already there)` : ''}.`,
    details([
      ['uploaded', `${count(r.uploadedBlocks, 'block')}, ${formatBytes(r.uploadedBytes)}`],
      ['already on remote', count(r.skippedBlocks, 'block')],
      ['retries', String(r.retries)],
    ]),
  ];
  return lines.join('\n');
}

export function restoreView(r: RestoreResult): string {
  return `Restored ${r.snapshotId} from ${r.remote} to ${r.path} (${formatBytes(r.sizeBytes)}; downloaded ${count(r.downloadedBlocks, 'block')}, ${formatBytes(r.downloadedBytes)}).`;
}

/** `remote`: the remote the snapshot came from; a stream otherwise. */
export function importView(r: ImportResult, remote?: string): string {
  if (r.mended) {
    const rest = remote === undefined ? `the stream, ${r.presentBlocks} it carried intact here` : `remote ${remote}, ${r.presentBlocks} intact here (not downloaded)`;
    return `Snapshot ${r.snapshotId} (${r.name}) was here already with the same blocks: nothing committed; ` +
      `${count(r.repairedBlocks, 'damaged or missing block')} written again from ${rest}.`;
  }
  // A daemon older than the names in the result sends neither (protocol additions may be absent).
  const named = r.name == null ? '' : r.renamedFrom == null ? ` as ${r.name}` : ` as ${r.name} (the disk already had a snapshot named ${r.renamedFrom})`;
  return `Imported snapshot ${r.snapshotId}${named} into disk ${r.diskId}${r.parentId ? ` on top of ${r.parentId}` : ''}: stored ${count(r.storedBlocks, 'new block')} (${formatBytes(r.storedBytes)}), ${r.presentBlocks} already here` +
    `${r.repairedBlocks > 0 ? `, ${count(r.repairedBlocks, 'damaged or missing block')} written again` : ''}.`;
}

/** Whether remote verify leaves damage behind: the command then exits 1, after its result. */
export function remoteVerifyLeftDamage(r: RemoteVerifyResult): boolean {
  return r.problems.some((p) => !p.repaired) || r.damagedManifests.length > 0;
}

export function remoteVerifyView(r: RemoteVerifyResult): string {
  const left = r.problems.filter((p) => !p.repaired);
  const lines = [
    `Verified ${count(r.checkedBlocks, 'block')} (${formatBytes(r.checkedBytes)}) of ${count(r.snapshots, 'snapshot')} on ${r.remote}: ` +
    (r.problems.length === 0 ? 'all intact.' : `${r.problems.length} damaged or missing, ${r.problems.length - left.length} uploaded again.`),
  ];
  for (const p of r.problems) {
    lines.push(`  ${p.key}: ${p.problem}${p.repaired ? ', uploaded again' : ''} (${count(p.snapshots.length, 'snapshot')}: ${p.snapshots.slice(0, 5).join(', ')}${p.snapshots.length > 5 ? ', ...' : ''})`);
  }
  for (const key of r.damagedManifests) lines.push(`  ${key}: the manifest cannot be read; its blocks were not checked`);
  if (left.length > 0) lines.push(`Run "blocksnap remote verify ${r.remote} --repair" on a host that holds ${left.length === 1 ? 'the block' : 'these blocks'}.`);
  return lines.join('\n');
}

export function remoteGcView(r: RemoteGcResult): string {
  return [
    `Remote gc of ${r.remote}: deleted ${count(r.deletedBlocks, 'block')} (${formatBytes(r.deletedBytes)}).`,
    details([
      ['manifests', String(r.manifests)], ['referenced blocks', String(r.referencedBlocks)],
      ['kept (too young)', String(r.youngBlocks)], ['waited for replications', `${r.waitedSeconds} s`],
    ]),
  ].join('\n');
}

export function exportView(r: ExportResult): string {
  return `Exported ${r.snapshotId}${r.baseId ? ` over ${r.baseId}` : ' (full)'} to ${r.path ?? 'stdout'}: ${count(r.blocks, 'block')}, ${formatBytes(r.bytes)}.`;
}
