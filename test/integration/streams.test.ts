/** Snapshot streams between two daemons (two hosts): export, copy the file, import. */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BLOCK, makeImage, scribble, sha256File } from './fixtures/images';
import { twoHosts } from './fixtures/two-hosts';

t.test('a full then an incremental stream recreate the same snapshots on another host', async (t) => {
  const { a, b, hashes, ids } = await twoHosts(t);
  const full = await a.json('snapshot', 'export', 'monday', '-o', join(a.imageRoot, 'monday.bsnap'));
  t.match(full, { snapshotId: ids[0], baseId: null, blocks: 4 });
  const inc = await a.json('snapshot', 'export', 'tuesday', '--from', 'monday', '-o', join(a.imageRoot, 'tuesday.bsnap'));
  t.match(inc, { snapshotId: ids[1], baseId: ids[0], blocks: 2 }, 'only the two changed blocks');
  t.ok(statSync(join(a.imageRoot, 'tuesday.bsnap')).size < 2 * BLOCK + 64 * 1024);
  copyFileSync(join(a.imageRoot, 'monday.bsnap'), join(b.imageRoot, 'monday.bsnap'));
  copyFileSync(join(a.imageRoot, 'tuesday.bsnap'), join(b.imageRoot, 'tuesday.bsnap'));

  const early = await b.cli('snapshot', 'import', '-i', join(b.imageRoot, 'tuesday.bsnap'), '--disk', 'vm', '--json');
  t.equal(early.code, 1);
  t.equal(early.json().error.code, 'BaseMissing', 'the incremental needs its base first');

  t.match(await b.json('snapshot', 'import', '-i', 'monday.bsnap', '--disk', 'vm'), { snapshotId: ids[0], storedBlocks: 4, parentId: null });
  t.match(await b.json('snapshot', 'import', '-i', 'tuesday.bsnap', '--disk', 'vm'), { snapshotId: ids[1], storedBlocks: 2, parentId: ids[0] });
  const mine = await b.json('snapshot', 'show', ids[1]!);
  const theirs = await a.json('snapshot', 'show', ids[1]!);
  const identity = (s: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(
    ['id', 'name', 'description', 'type', 'status', 'parentId', 'createdAt', 'sizeBytes', 'blockSize', 'blockCount', 'logicalBytes', 'changedBlocks']
      .map((k) => [k, s[k]]));
  t.same(identity(mine), identity(theirs), 'the same snapshot: id, name, parent, size, statistics');
  await b.json('clone', 'monday', join(b.imageRoot, 'monday.img'));
  await b.json('clone', ids[1]!, join(b.imageRoot, 'tuesday.img'));
  t.equal(sha256File(join(b.imageRoot, 'monday.img')), hashes[0]);
  t.equal(sha256File(join(b.imageRoot, 'tuesday.img')), hashes[1]);
  t.match(await b.json('snapshot', 'import', '-i', 'monday.bsnap', '--disk', 'vm'), { snapshotId: ids[0], mended: true, repairedBlocks: 0, storedBlocks: 0 },
    'a stream of a snapshot that is here, whole, mends nothing');
});

t.test('a damaged or truncated stream is refused and nothing is committed', async (t) => {
  const { a, b, ids } = await twoHosts(t);
  const file = join(a.imageRoot, 'monday.bsnap');
  await a.json('snapshot', 'export', 'monday', '-o', file);
  const good = readFileSync(file);
  const cases: Array<[string, Buffer]> = [
    ['a flipped byte in a block', Buffer.from(good)],
    ['a flipped byte in the header', Buffer.from(good)],
    ['a truncated stream', good.subarray(0, good.length - 1000)],
    ['trailing garbage', Buffer.concat([good, Buffer.from('x')])],
  ];
  cases[0]![1][good.length - 2 * BLOCK] ^= 1;
  cases[1]![1][20] ^= 1;
  for (const [what, bytes] of cases) {
    const path = join(b.imageRoot, `bad-${what.replace(/ /g, '-')}.bsnap`);
    writeFileSync(path, bytes);
    const r = await b.cli('snapshot', 'import', '-i', path, '--disk', 'vm', '--json');
    t.equal(r.code, 1, what);
    t.equal(r.json().error.code, 'StreamCorrupt', what);
  }
  t.same(await b.json('snapshot', 'list'), [], 'no snapshot was committed');
  copyFileSync(file, join(b.imageRoot, 'monday.bsnap'));
  t.match(await b.json('snapshot', 'import', '-i', 'monday.bsnap', '--disk', 'vm'), { snapshotId: ids[0] }, 'the intact stream still imports');
});

t.test('streams stay inside the image roots and never overwrite', async (t) => {
  const { a } = await twoHosts(t);
  const outside = await a.cli('snapshot', 'export', 'monday', '-o', '/tmp/escape.bsnap', '--json');
  t.equal(outside.json().error.code, 'PathNotAllowed');
  t.notOk(existsSync('/tmp/escape.bsnap'));
  writeFileSync(join(a.imageRoot, 'taken.bsnap'), 'x');
  t.equal((await a.cli('snapshot', 'export', 'monday', '-o', 'taken.bsnap', '--json')).json().error.code, 'FileExists');
  t.equal((await a.cli('snapshot', 'import', '-i', '/etc/passwd', '--disk', 'vm', '--json')).json().error.code, 'PathNotAllowed');
  t.equal((await a.cli('snapshot', 'export', 'tuesday', '--from', 'nope', '-o', 'x.bsnap', '--json')).json().error.code, 'SnapshotNotFound');
});

t.test('an import counts against the disk snapshot quota like a snapshot taken there', async (t) => {
  const { a, b } = await twoHosts(t, ['--manual-snapshot-quota', '1']);
  await b.json('snapshot', 'create', 'vm', '--name', 'local');
  await a.json('snapshot', 'export', 'monday', '-o', join(a.imageRoot, 'monday.bsnap'));
  copyFileSync(join(a.imageRoot, 'monday.bsnap'), join(b.imageRoot, 'monday.bsnap'));
  const r = await b.cli('snapshot', 'import', '-i', 'monday.bsnap', '--disk', 'vm', '--json');
  t.equal(r.code, 1);
  t.equal(r.json().error.code, 'SnapshotQuotaExceeded', 'the manual quota of 1 is taken');
  t.same((await b.json('snapshot', 'list')).map((s: { name: string }) => s.name), ['local'], 'nothing imported, nothing evicted');
  await b.json('snapshot', 'delete', 'local');
  t.match(await b.json('snapshot', 'import', '-i', 'monday.bsnap', '--disk', 'vm'), { storedBlocks: 4 }, 'with room it imports');
});

interface StreamRecord { digest: Buffer; data: Buffer }

/** The block records of a stream's body (after the map), and the end record rebuilt for a list of them. */
function parseRecords(body: Buffer): StreamRecord[] {
  const out: StreamRecord[] = [];
  for (let at = 0; body[at] === 0x01;) {
    const len = body.readUInt32LE(at + 33);
    out.push({ digest: body.subarray(at + 1, at + 33), data: body.subarray(at + 37, at + 37 + len) });
    at += 37 + len;
  }
  return out;
}

function encodeRecords(recs: StreamRecord[]): Buffer {
  const end = Buffer.alloc(17);
  end.writeUInt8(0xff, 0);
  end.writeBigUInt64LE(BigInt(recs.length), 1);
  end.writeBigUInt64LE(BigInt(recs.reduce((a, r) => a + r.data.length, 0)), 9);
  const parts = recs.flatMap((r) => {
    const head = Buffer.alloc(37);
    head.writeUInt8(0x01, 0);
    r.digest.copy(head, 1);
    head.writeUInt32LE(r.data.length, 33);
    return [head, r.data];
  });
  return Buffer.concat([...parts, end]);
}

/** A stream's packed map. */
function streamMap(stream: Buffer): Buffer {
  const hlen = stream.readUInt32LE(12);
  const header = JSON.parse(stream.subarray(16, 16 + hlen).toString());
  return stream.subarray(16 + hlen + 32, 16 + hlen + 32 + header.snapshot.blockCount * 32);
}

/**
 * Re-seals a stream after editing its header, map or block records, as anyone can: the checksums
 * prove the bytes whole, not that blocksnap wrote them.
 */
function reseal(good: Buffer, edit: { header?: (h: any) => void; map?: (m: Buffer) => void; records?: (r: StreamRecord[]) => StreamRecord[] }): Buffer {
  const hlen = good.readUInt32LE(12);
  const header = JSON.parse(good.subarray(16, 16 + hlen).toString());
  const map = Buffer.from(streamMap(good));
  let rest = good.subarray(16 + hlen + 32 + map.length + 32, good.length - 32);
  edit.header?.(header);
  edit.map?.(map);
  if (edit.records) rest = encodeRecords(edit.records(parseRecords(rest)));
  const json = Buffer.from(JSON.stringify(header));
  const fixed = Buffer.from(good.subarray(0, 16));
  fixed.writeUInt32LE(json.length, 12);
  const sha = (...b: Buffer[]): Buffer => b.reduce((h, x) => h.update(x), createHash('sha256')).digest();
  const body = Buffer.concat([fixed, json, sha(fixed, json), map, sha(map), rest]);
  return Buffer.concat([body, sha(body)]);
}

t.test('a re-sealed stream whose header fields have the wrong types is refused, and the catalog stays listable', async (t) => {
  const { a, b } = await twoHosts(t);
  await a.json('snapshot', 'export', 'monday', '-o', join(a.imageRoot, 'monday.bsnap'));
  const bad = reseal(readFileSync(join(a.imageRoot, 'monday.bsnap')), {
    header: (h) => { h.snapshot.createdAt = 12345; },
  });
  writeFileSync(join(b.imageRoot, 'typed.bsnap'), bad);
  const r = await b.cli('snapshot', 'import', '-i', 'typed.bsnap', '--disk', 'vm', '--json');
  t.equal(r.code, 1);
  t.match(r.json().error, { code: 'StreamCorrupt', message: /snapshot\.createdAt/ });
  t.same(await b.json('snapshot', 'list'), [], 'nothing stored, and listing still works');
});

/** A stream of a two-block snapshot on `a`: a full block and a 4 KiB tail, both with data so both travel. */
async function tailStream(a: Awaited<ReturnType<typeof twoHosts>>['a']): Promise<Buffer> {
  makeImage(join(a.imageRoot, 'odd.img'), BLOCK + 4096, []);
  scribble(join(a.imageRoot, 'odd.img'), 0, 100);
  scribble(join(a.imageRoot, 'odd.img'), BLOCK, 4096);
  await a.json('disk', 'add', 'odd.img', '--name', 'odd');
  const snap = await a.json('snapshot', 'create', 'odd', '--name', 'tail');
  await a.json('snapshot', 'export', snap.id, '-o', join(a.imageRoot, 'tail.bsnap'));
  return readFileSync(join(a.imageRoot, 'tail.bsnap'));
}

t.test('a stream whose map puts the short last block at another position is refused', async (t) => {
  const { a, b } = await twoHosts(t);
  const swapped = reseal(await tailStream(a), {
    map: (m) => { const first = Buffer.from(m.subarray(0, 32)); m.copy(m, 0, 32, 64); first.copy(m, 32); },
  });
  writeFileSync(join(b.imageRoot, 'swapped.bsnap'), swapped);
  const r = await b.cli('snapshot', 'import', '-i', 'swapped.bsnap', '--disk', 'vm', '--json');
  t.equal(r.code, 1);
  // Whichever of the two swapped blocks comes first is refused: each is at a position of the other's length.
  t.match(r.json().error, { code: 'StreamCorrupt', message: /in the stream has (4194304 bytes; its position in the map needs 4096|4096 bytes; its position in the map needs 4194304)$/ });
  t.same(await b.json('snapshot', 'list'), [], 'nothing was committed');
});

t.test('a stream whose map names one block at a whole and at the short last position is refused before any block is read', async (t) => {
  const { a, b } = await twoHosts(t);
  const doubled = reseal(await tailStream(a), { map: (m) => { m.copy(m, 32, 0, 32); } });
  writeFileSync(join(b.imageRoot, 'doubled.bsnap'), doubled);
  const r = await b.cli('snapshot', 'import', '-i', 'doubled.bsnap', '--disk', 'vm', '--json');
  t.equal(r.code, 1);
  t.match(r.json().error, { code: 'StreamCorrupt', message: /map names block [0-9a-f]{64} at positions that need different lengths$/ });
  t.same(await b.json('snapshot', 'list'), [], 'nothing was committed');
});

t.test('a stream whose map puts a block this host already has where its length cannot fit is refused', async (t) => {
  const { a, b } = await twoHosts(t);
  const monday = join(a.imageRoot, 'monday.bsnap');
  await a.json('snapshot', 'export', 'monday', '-o', monday);
  copyFileSync(monday, join(b.imageRoot, 'monday.bsnap'));
  await b.json('snapshot', 'import', '-i', 'monday.bsnap', '--disk', 'vm');
  // A whole block b holds now, named at the 4 KiB tail position and left out of the stream as
  // a sender leaves out what the receiver has.
  const held = Buffer.from(streamMap(readFileSync(monday)).subarray(0, 32));
  const tail = await tailStream(a);
  const tailDigest = Buffer.from(streamMap(tail).subarray(32, 64));
  const forged = reseal(tail, { map: (m) => { held.copy(m, 32); }, records: (recs) => recs.filter((r) => !r.digest.equals(tailDigest)) });
  writeFileSync(join(b.imageRoot, 'forged.bsnap'), forged);
  const r = await b.cli('snapshot', 'import', '-i', 'forged.bsnap', '--disk', 'vm', '--json');
  t.equal(r.code, 1);
  t.match(r.json().error, { code: 'StreamCorrupt', message: `puts block ${held.toString('hex')} at a position of 4096 bytes; the block this host has under that digest has ${BLOCK}` });
  t.same((await b.json('snapshot', 'list')).map((s: { name: string }) => s.name), ['monday'], 'only the snapshot imported before');
  t.match(await b.json('store', 'verify'), { problems: [] }, 'the store is whole');
});
