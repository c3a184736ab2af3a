/**
 * A backing file whose format its image does not record is probed, as QEMU probes it: qcow2 by
 * its magic, raw only when no other format QEMU knows claims the file. One another format claims
 * (a VMDK, a VHD, ...) is refused: read as raw, a snapshot would hold the container's bytes while
 * the VM sees the disk inside it, and a rollback would record it as raw.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Job } from '../../src/engine/types';
import { finished, openEngine, refusal, snapshot } from '../helpers/engine';
import { haveQemu, qemuImg } from '../helpers/qemu';

const BS = 64 * 1024;
const MiB = 1024 * 1024;
const skip = haveQemu();

/** A qcow2 overlay at `path` on `backing` whose header records no backing format. */
function unrecorded(path: string, backing: string): string {
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', 'raw', path, '1M');
  const bytes = readFileSync(path);
  const at = bytes.subarray(0, 65536).indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
  if (at < 0 || at % 8 !== 0) throw new Error(`no backing format extension in ${path}`);
  // An extension type nobody knows, which QEMU and the reader skip.
  bytes.writeUInt32BE(0x6e6f6e65, at);
  writeFileSync(path, bytes);
  return path;
}

/** A file of 1 MiB starting with `head` at `offset`. */
function startingWith(path: string, head: Buffer, offset = 0): string {
  const bytes = Buffer.alloc(MiB, 0x5c);
  head.copy(bytes, offset);
  writeFileSync(path, bytes);
  return path;
}

t.test('a VMDK backing file with no recorded format is refused, not read as raw', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const vmdk = join(images, 'b.vmdk');
  qemuImg('create', '-q', '-f', 'vmdk', vmdk, '1M');
  const r = await refusal(() => engine.addDisk({ path: unrecorded(join(images, 't.qcow2'), 'b.vmdk') }));
  t.equal(r.code, 'UnsupportedFormat', r.message);
  t.match(r.message, /QEMU would probe it as vmdk/);
});

t.test('each magic of a format QEMU probes refuses a backing file with no recorded format', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const vdi = Buffer.alloc(68);
  vdi.writeUInt32LE(0xbeda107f, 64);
  const cases: Array<[string, Buffer]> = [
    ['vmdk', Buffer.from('KDMV')], ['vmdk', Buffer.from('COWD')], ['vmdk', Buffer.from('# Disk DescriptorFile\nversion=1\n')],
    ['vhdx', Buffer.from('vhdxfile')], ['vpc', Buffer.from('conectix')], ['vdi', vdi], ['qed', Buffer.from('QED\0')],
    ['luks', Buffer.from('LUKS\xba\xbe', 'latin1')], ['parallels', Buffer.from('WithoutFreeSpace')], ['parallels', Buffer.from('WithouFreSpacExt')],
    ['bochs', Buffer.from('Bochs Virtual HD Image')],
    ['cloop', Buffer.from('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n')],
  ];
  for (const [i, [format, head]] of cases.entries()) {
    startingWith(join(images, `b${i}.img`), head);
    const r = await refusal(() => engine.addDisk({ path: unrecorded(join(images, `t${i}.qcow2`), `b${i}.img`) }));
    t.equal(r.code, 'UnsupportedFormat', `${format}: ${r.message}`);
    t.match(r.message, `probe it as ${format}`);
  }
  startingWith(join(images, 'b.dmg'), Buffer.alloc(0));
  const dmg = await refusal(() => engine.addDisk({ path: unrecorded(join(images, 'tdmg.qcow2'), 'b.dmg') }));
  t.equal(dmg.code, 'UnsupportedFormat', `a name ending in .dmg: ${dmg.message}`);
  t.same(engine.listDisks(), [], 'nothing registered');
});

t.test('a raw backing file with no recorded format is still read as raw', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  startingWith(join(images, 'b.raw'), Buffer.from('not a magic of any format'));
  const img = unrecorded(join(images, 't.qcow2'), 'b.raw');
  await engine.addDisk({ path: img, name: 't' });
  const snap = await snapshot(engine, 't');
  const clone = join(images, 'c.raw');
  await finished(engine, engine.startClone(snap.id, clone, { format: 'raw' }));
  t.ok(readFileSync(clone).equals(readFileSync(join(images, 'b.raw'))), 'the snapshot holds the raw backing file');
});

t.test('a probed backing file replaced by a VMDK after disk add is refused by the snapshot', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  startingWith(join(images, 'b.img'), Buffer.alloc(0));
  const img = unrecorded(join(images, 't.qcow2'), 'b.img');
  await engine.addDisk({ path: img, name: 't' });
  qemuImg('create', '-q', '-f', 'vmdk', join(images, 'b.img'), '1M');
  const job = await engine.waitJob(engine.startSnapshot('t').id) as Job;
  t.equal(job.error?.code, 'UnsupportedFormat', job.error?.message ?? '');
});
