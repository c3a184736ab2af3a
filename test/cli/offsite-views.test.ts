import t from 'tap';
import { importView, remoteSnapshotTable } from '../../src/cli/offsite-views';
import type { ImportResult, RemoteSnapshotEntry } from '../../src/engine/offsite-types';

t.test('remote snapshots: a damaged manifest is a row of its own, explained with the command that removes it', async (t) => {
  const snaps: RemoteSnapshotEntry[] = [
    {
      id: 's-0000000000000001', diskId: 'd-0000000000000001', diskName: 'web1', name: 'nightly', description: '', parentId: null,
      createdAt: '2027-01-01T00:00:00.000Z', sizeBytes: 4194304, blockSize: 4194304, logicalBytes: 4194304, host: 'h0123456789abcdef',
      replicatedAt: '2027-01-01T00:01:00.000Z', key: 'manifests/d-0000000000000001/s-0000000000000001.json', damaged: null,
    },
    {
      id: 's-0000000000000002', diskId: 'd-0000000000000001', diskName: null, name: null, description: null, parentId: null, createdAt: null,
      sizeBytes: null, blockSize: null, logicalBytes: null, host: null, replicatedAt: null, key: 'manifests/d-0000000000000001/s-0000000000000002.json',
      damaged: { code: 'RemoteCorrupt', message: 'manifest manifests/d-0000000000000001/s-0000000000000002.json fails its checksum' },
    },
  ];
  const out = remoteSnapshotTable(snaps, 'offsite');
  t.match(out, /s-0000000000000002 +d-0000000000000001 +DAMAGED \(RemoteCorrupt\) +- +- +- +-/);
  t.match(out, /1 manifest cannot be read/);
  t.match(out, /s-0000000000000002: manifest .* fails its checksum/);
  t.match(out, /blocksnap remote delete offsite s-0000000000000002 --force/);
  t.notMatch(remoteSnapshotTable(snaps.slice(0, 1), 'offsite'), /cannot be read/, 'nothing about damage when there is none');
});

t.test('an import names the snapshot, and a rename only when the daemon reports one', async (t) => {
  const r = { snapshotId: 's-0000000000000001', diskId: 'd-0000000000000001', parentId: null, storedBlocks: 2, storedBytes: 8192, presentBlocks: 1, repairedBlocks: 0 };
  t.equal(importView({ ...r, name: 'nightly', renamedFrom: null } as ImportResult),
    'Imported snapshot s-0000000000000001 as nightly into disk d-0000000000000001: stored 2 new blocks (8 KiB), 1 already here.');
  t.match(importView({ ...r, name: 'nightly-2', renamedFrom: 'nightly' } as ImportResult), /as nightly-2 \(the disk already had a snapshot named nightly\)/);
  // A daemon from before these result fields sends neither: no rename may be made up.
  t.equal(importView(r as unknown as ImportResult),
    'Imported snapshot s-0000000000000001 into disk d-0000000000000001: stored 2 new blocks (8 KiB), 1 already here.');
});
