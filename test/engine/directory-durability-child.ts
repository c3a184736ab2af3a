/**
 * Engines in a child process, run under strace by directory-durability.test.ts: each step ends by
 * creating a marker directory `<root>/marks/<step>`, so that the trace shows where its answer came.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' ROOT
 *
 * `<root>/images` holds the images; the data dirs are `<root>/x/data`, `<root>/y/data` and
 * `<root>/z/data`, with `x`, `y` and `z` missing at the start.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import type { Snapshot } from '../../src/engine/types';
import { fillBlock, makeImage } from '../helpers/images';
import { stalledSender } from '../helpers/stalled-sender';

const BS = 64 * 1024;

async function main(): Promise<void> {
  const root = process.argv[process.argv.length - 1]!;
  const images = join(root, 'images');
  const mark = (step: string): void => mkdirSync(join(root, 'marks', step));
  const waitFor = async (engine: Engine, id: string): Promise<unknown> => {
    const job = await engine.waitJob(id);
    if (job.state !== 'succeeded') throw new Error(`job ${job.kind} ${job.state}: ${job.error?.message}`);
    return job.result;
  };

  const x = await Engine.open({ dataDir: join(root, 'x', 'data'), imageRoots: [images], blockSize: BS });
  mark('open');
  for (const name of ['a', 'b']) {
    // The same content: b's snapshot finds every block present, in fan-out directories a's made.
    const img = makeImage(join(images, `${name}.raw`), 4 * BS);
    for (let i = 0; i < 4; i++) fillBlock(img, i, BS, `block-${i}`);
    await x.addDisk({ path: img, name });
  }
  const a = await waitFor(x, x.startSnapshot('a', { name: 'sa' }).id) as Snapshot;
  mark('snapshot-a');
  const b = await waitFor(x, x.startSnapshot('b', { name: 'sb' }).id) as Snapshot;
  mark('snapshot-b');
  await x.cloneCow('sa', 'c');
  mark('clone-cow');
  // cow/ exists now: this clone syncs its name in the data dir again rather than trust its maker.
  await x.cloneCow('sa', 'c2');
  mark('clone-cow-2');
  await waitFor(x, x.offsite.streams.startExport(a.id, join(images, 'a.bsnap')).id);
  await waitFor(x, x.offsite.streams.startExport(b.id, join(images, 'b.bsnap')).id);
  await x.close();

  const y = await Engine.open({ dataDir: join(root, 'y', 'data'), imageRoots: [images], blockSize: BS });
  const disk = await y.addDisk({ path: makeImage(join(images, 'y.raw'), 4 * BS), name: 'y' });
  mark('open-y');
  await waitFor(y, y.offsite.streams.startImport(join(images, 'a.bsnap'), disk.id).id);
  mark('import');
  await y.close();

  // The same blocks from two streams: the first import stores them and is held before its end
  // record, so the second finds them present, unreferenced, in the store.
  const z = await Engine.open({ dataDir: join(root, 'z', 'data'), imageRoots: [images], blockSize: BS });
  for (const name of ['z1', 'z2']) await z.addDisk({ path: makeImage(join(images, `${name}.raw`), 4 * BS), name });
  mark('open-z');
  const bytes = readFileSync(join(images, 'b.bsnap'));
  const held = stalledSender(bytes, bytes.length - 1);
  const first = z.offsite.streams.startImport(held.channel, 'z1');
  await held.stalled();
  mark('import-held');
  await waitFor(z, z.offsite.streams.startImport(join(images, 'a.bsnap'), 'z2').id);
  mark('import-found');
  held.resume();
  await waitFor(z, first.id);
  await z.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
