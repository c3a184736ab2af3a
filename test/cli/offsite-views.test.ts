import t from 'tap';
import { importView, remoteSnapshotTable, remoteVerifyLeftDamage, remoteVerifyView } from '../../src/cli/offsite-views';
import type { ImportResult, RemoteSnapshotEntry, RemoteVerifyResult } from '../../src/engine/offsite-types';

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

t.test('an import that mended a snapshot here says nothing was committed and how many blocks it wrote again', async (t) => {
  const r = {
    snapshotId: 's-0000000000000001', diskId: 'd-0000000000000001', parentId: null, name: 'nightly', renamedFrom: null,
    storedBlocks: 0, storedBytes: 0, presentBlocks: 3, repairedBlocks: 2, mended: true,
  };
  t.equal(importView(r),
    'Snapshot s-0000000000000001 (nightly) was here already with the same blocks: nothing committed; 2 damaged or missing blocks written again from the stream, 3 it carried intact here.');
});

t.test('an import from a remote that mended a snapshot here names the remote and the blocks it did not download', async (t) => {
  const r = {
    snapshotId: 's-0000000000000001', diskId: 'd-0000000000000001', parentId: null, name: 'nightly', renamedFrom: null,
    storedBlocks: 0, storedBytes: 0, presentBlocks: 3, repairedBlocks: 2, mended: true,
  };
  t.equal(importView(r, 'offsite'),
    'Snapshot s-0000000000000001 (nightly) was here already with the same blocks: nothing committed; 2 damaged or missing blocks written again from remote offsite, 3 intact here (not downloaded).');
});

t.test('remote verify names each damaged block, and the repair while one is left', async (t) => {
  const key = 'blocks/000/000588';
  const r: RemoteVerifyResult = {
    remote: 'offsite', snapshots: 2, checkedBlocks: 3, checkedBytes: 12582912, damagedManifests: [],
    problems: [{ digest: '000588', key, problem: 'damaged', snapshots: ['s-0000000000000001'], repaired: false }],
  };
  const out = remoteVerifyView(r);
  t.match(out, /^Verified 3 blocks \(12 MiB\) of 2 snapshots on offsite: 1 damaged or missing, 0 uploaded again\./);
  t.match(out, /blocks\/000\/000588: damaged \(1 snapshot: s-0000000000000001\)/);
  t.match(out, /Run "blocksnap remote verify offsite --repair" on a host that holds the block\./);
  t.equal(remoteVerifyLeftDamage(r), true, 'exits 1');
  const repaired = { ...r, problems: [{ ...r.problems[0]!, repaired: true }] };
  t.notMatch(remoteVerifyView(repaired), /Run "blocksnap/);
  t.equal(remoteVerifyLeftDamage(repaired), false);
  t.match(remoteVerifyView({ ...r, problems: [] }), /of 2 snapshots on offsite: all intact\.$/);
});
