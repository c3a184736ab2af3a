/**
 * A rollback of a qcow2 image QEMU flagged corrupt is refused (ImageCorrupt), and the refusal
 * names both ways out: the repair, and, when the repair fails, a snapshot written to a new image
 * and moved into place.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openEngine, snapshot } from '../helpers/engine';
import { haveQemu, qemuImg } from '../helpers/qemu';

const missing = haveQemu();
if (missing) t.plan(0, missing);

t.test('the refusal to roll back a qcow2 image with the corrupt bit names the repair and the clone to fall back on', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'lc.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '8M');
  const disk = await engine.addDisk({ path: img });
  const y1 = await snapshot(engine, disk.id, 'y1');
  // The corrupt bit is bit 1 of incompatible_features, the big-endian field at bytes 72-79.
  const fd = openSync(img, 'r+');
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, 79);
  writeSync(fd, Buffer.from([byte[0]! | 2]), 0, 1, 79);
  closeSync(fd);
  t.throws(() => engine.startRollback(disk.id, y1.id), {
    code: 'ImageCorrupt',
    message: new RegExp(`corrupt bit is set\\); repair it with qemu-img check -r all .*blocksnap clone SNAPSHOT NEW --format qcow2\\).*mv NEW ${img}\\)`),
  });
});
