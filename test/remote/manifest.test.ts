import { createHash } from 'node:crypto';
import t from 'tap';
import { decodeManifest, encodeManifest, type Manifest } from '../../src/remote/manifest';
import { distinctDigests } from '../../src/stream/snapshot-fields';
import { blockKey, digestOfKey, idsOfManifestKey, manifestKey } from '../../src/remote/layout';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
const B = 4 * 1024 * 1024;

function sample(): Manifest {
  const map = Buffer.concat([digest('a'), Buffer.alloc(32), digest('a'), digest('b')]);
  return {
    snapshot: {
      id: 's-0123456789abcdef', diskId: 'd-0123456789abcdef', diskName: 'vm', name: 'one', description: 'x', type: 'manual',
      parentId: null, createdAt: '2026-01-01T00:00:00.000Z', completedAt: '2026-01-01T00:00:01.000Z',
      sizeBytes: 3 * B + 100, blockSize: B, blockCount: 4, logicalBytes: 2 * B + 100,
    },
    host: 'h0011223344556677', replicatedAt: '2026-01-02T00:00:00.000Z', map,
  };
}

t.test('a manifest round-trips and names its distinct blocks with their lengths', async (t) => {
  const m = sample();
  const back = decodeManifest(encodeManifest(m), 'k');
  t.same(back.snapshot, m.snapshot);
  t.ok(back.map.equals(m.map));
  const d = distinctDigests(back.map, m.snapshot.sizeBytes, B);
  t.same([...d.entries()], [[digest('a').toString('hex'), B], [digest('b').toString('hex'), 100]], 'the last block is the short one');
});

t.test('any change to a manifest is RemoteCorrupt', async (t) => {
  const text = encodeManifest(sample()).toString();
  const cases = [
    text.replace('"name":"one"', '"name":"two"'),
    text.replace('"version":1', '"version":2'),
    text.slice(0, -10),
    text.replace(/"sha256":"[0-9a-f]+"/, '"sha256":"00"'),
    '{"format":"other"}',
  ];
  for (const c of cases) t.throws(() => decodeManifest(Buffer.from(c), 'k'), { code: 'RemoteCorrupt' });
  const shortMap = { ...sample(), map: Buffer.alloc(64) };
  t.throws(() => decodeManifest(encodeManifest(shortMap), 'k'), { code: 'RemoteCorrupt', message: /map of 64 bytes for 4 blocks/ });
});

t.test('a manifest naming one block at a whole and at the short last position is RemoteCorrupt', async (t) => {
  // Its checksum holds (anyone can recompute it), but no block can be both 4 MiB and 100 bytes long.
  const m = sample();
  digest('a').copy(m.map, 3 * 32);
  t.throws(() => decodeManifest(encodeManifest(m), 'k'), { code: 'RemoteCorrupt', message: `manifest k names block ${digest('a').toString('hex')} at positions that need different lengths` });
});

t.test('keys: blocks fan out by the first three hex digits; only well-formed keys are recognised', async (t) => {
  const hex = digest('a').toString('hex');
  t.equal(blockKey('site/x', hex), `site/x/blocks/${hex.slice(0, 3)}/${hex}`);
  t.equal(blockKey('', hex), `blocks/${hex.slice(0, 3)}/${hex}`);
  t.equal(digestOfKey(blockKey('p', hex)), hex);
  t.equal(digestOfKey(`p/blocks/fff/${hex}`), hex.startsWith('fff') ? hex : null, 'a block in the wrong fan-out directory is not ours');
  t.equal(digestOfKey('p/blocks/abc/readme'), null);
  t.same(idsOfManifestKey(manifestKey('p', 'd-0123456789abcdef', 's-0123456789abcdef')), { diskId: 'd-0123456789abcdef', snapshotId: 's-0123456789abcdef' });
  t.equal(idsOfManifestKey('p/manifests/d-1/s-2.json'), null);
});

t.test('a manifest whose checksum holds but whose fields are of the wrong type is RemoteCorrupt naming the field', async (t) => {
  // The checksum anyone can recompute proves the text whole, not well-formed.
  const cases: Array<[string, (m: any) => void]> = [
    ['snapshot.createdAt', (m) => { m.snapshot.createdAt = 12345; }],
    ['snapshot.completedAt', (m) => { m.snapshot.completedAt = 'later'; }],
    ['snapshot.description', (m) => { m.snapshot.description = { x: [1, 2] }; }],
    ['snapshot.parentId', (m) => { m.snapshot.parentId = 42; }],
    ['snapshot.sizeBytes', (m) => { Object.assign(m.snapshot, { sizeBytes: -5, blockCount: 0, logicalBytes: 0 }); m.map = Buffer.alloc(0); }],
    ['host', (m) => { m.host = ['h']; }],
    ['replicatedAt', (m) => { m.replicatedAt = null; }],
  ];
  for (const [field, edit] of cases) {
    const m = sample();
    edit(m);
    t.throws(() => decodeManifest(encodeManifest(m), 'k'), { code: 'RemoteCorrupt', message: new RegExp(`field ${field.replace('.', '\\.')} `) }, field);
  }
});
