import t from 'tap';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BlocksnapError } from '../../src/errors';
import { partialPath, removeInterruptedPartials, writePartial } from '../../src/engine/partial-files';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { makeImage, MiB, writeAt, pattern } from '../helpers/images';

t.test('the target name appears only once the write is complete', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'clone.img');
  await writePartial(target, 'j_one', async (partial) => {
    writeFileSync(partial, 'all of it');
    t.notOk(existsSync(target), 'not under its name while being written');
    t.equal(partial, partialPath(target, 'j_one'));
  });
  t.equal(readFileSync(target, 'utf8'), 'all of it');
  t.same(readdirSync(dir), ['clone.img'], 'the partial name is gone');
});

t.test('a file that appears under the name meanwhile is kept, and the job fails with FileExists', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'clone.img');
  await t.rejects(writePartial(target, 'j_two', async (partial) => {
    writeFileSync(partial, 'ours');
    writeFileSync(target, 'someone else\'s');
  }), { code: 'FileExists' });
  t.equal(readFileSync(target, 'utf8'), 'someone else\'s');
  t.same(readdirSync(dir), ['clone.img']);
});

t.test('a failed write leaves neither name', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'clone.img');
  await t.rejects(writePartial(target, 'j_three', async (partial) => {
    writeFileSync(partial, 'half');
    throw new Error('disk on fire');
  }), /disk on fire/);
  t.same(readdirSync(dir), []);
});

t.test('a failed write names the target, not the partial name, and says it was not created', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'clone.img');
  const partial = partialPath(target, 'j_full');
  await t.rejects(writePartial(target, 'j_full', async () => {
    throw new BlocksnapError('NoSpace', `write ${partial}: No space left on device (ENOSPC)`, { errno: 28, path: partial });
  }), { code: 'NoSpace', message: `write ${target}: No space left on device (ENOSPC); ${target} was not created`, details: { errno: 28, path: target } });
});

t.test('recovery removes the partial files of interrupted clone and flatten jobs, and nothing else', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'vm.img');
  writeFileSync(partialPath(target, 'j_clone'), 'x');
  writeFileSync(partialPath(target, 'j_flat'), 'x');
  writeFileSync(partialPath(target, 'j_other'), 'x');
  writeFileSync(target, 'a finished image of the same name');
  const removed = await removeInterruptedPartials([
    { id: 'j_clone', kind: 'clone', target },
    { id: 'j_flat', kind: 'flatten', target },
    { id: 'j_other', kind: 'replicate', target },
    { id: 'j_none', kind: 'clone', target: null },
  ]);
  t.equal(removed, 2);
  t.same(readdirSync(dir).sort(), [`.blocksnap-j_other.partial`, 'vm.img']);
});

t.test('a clone leaves only its target in the directory', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'vm.img'), 12 * MiB);
  writeAt(img, 0, pattern('vm', 9 * MiB));
  await engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(engine, 'vm');
  const out = join(images, 'copy.img');
  const job = await finished(engine, engine.startClone(snap.id, out));
  t.match(job.result, { path: out });
  t.ok(readFileSync(out).equals(readFileSync(img)));
  t.same(readdirSync(images).sort(), ['copy.img', 'vm.img']);
});

t.test('a file a writer creates has no name until it is complete', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'export.stream');
  await writePartial(target, 'j_nameless', async (partial, at) => {
    const file = at.create();
    try {
      await file.write(Buffer.from('all of it'), 0);
      t.same(readdirSync(dir), [], 'written without a name');
      await file.complete();
      t.same(readdirSync(dir), [basename(partial)], 'then given the partial name, before close');
    } finally {
      await file.close();
    }
  });
  t.equal(readFileSync(target, 'utf8'), 'all of it');
  t.same(readdirSync(dir), ['export.stream']);
});

t.test('a writer that fails before its file is complete leaves nothing, with nothing to remove', async (t) => {
  const dir = t.testdir();
  await t.rejects(writePartial(join(dir, 'export.stream'), 'j_fails', async (_partial, at) => {
    const file = at.create();
    try {
      await file.write(Buffer.alloc(1 << 20, 1), 0);
      throw new Error('disk on fire');
    } finally {
      await file.close();
    }
  }), /disk on fire/);
  t.same(readdirSync(dir), []);
});

t.test('a partial name taken before the file is complete fails the job with FileExists', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'export.stream');
  await t.rejects(writePartial(target, 'j_taken', async (partial, at) => {
    const file = at.create();
    try {
      writeFileSync(partial, 'someone else\'s');
      await file.complete();
    } finally {
      await file.close();
    }
  }), { code: 'FileExists' });
  t.same(readdirSync(dir), [], 'the partial name is removed on failure, as before, and the target never appeared');
});

t.test('where O_TMPFILE is not to be had, the file is created under its partial name', async (t) => {
  const before = process.env.BLOCKSNAP_NO_TMPFILE;
  process.env.BLOCKSNAP_NO_TMPFILE = '1';
  t.teardown(() => {
    if (before === undefined) delete process.env.BLOCKSNAP_NO_TMPFILE;
    else process.env.BLOCKSNAP_NO_TMPFILE = before;
  });
  const dir = t.testdir();
  const target = join(dir, 'export.stream');
  await writePartial(target, 'j_named', async (partial, at) => {
    const file = at.create();
    try {
      t.same(readdirSync(dir), [basename(partial)], 'named from the start');
      await file.write(Buffer.from('all of it'), 0);
      await file.complete();
    } finally {
      await file.close();
    }
  });
  t.equal(readFileSync(target, 'utf8'), 'all of it');
  t.same(readdirSync(dir), ['export.stream']);

  await t.rejects(writePartial(target.replace('export', 'failed'), 'j_named_fails', async (_partial, at) => {
    const file = at.create();
    await file.close();
    throw new Error('disk on fire');
  }), /disk on fire/);
  t.same(readdirSync(dir), ['export.stream'], 'a failed job removes its partial file');

  // The native writers too.
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'vm.img'), 12 * MiB);
  writeAt(img, 0, pattern('vm', 9 * MiB));
  await engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(engine, 'vm');
  for (const format of ['raw', 'qcow2'] as const) {
    const job = await finished(engine, engine.startClone(snap.id, join(images, `copy.${format}`), { format }));
    t.match(job, { state: 'succeeded' }, `${format}: cloned`);
  }
  t.ok(readFileSync(join(images, 'copy.raw')).equals(readFileSync(img)));
  t.same(readdirSync(images).sort(), ['copy.qcow2', 'copy.raw', 'vm.img']);
});

