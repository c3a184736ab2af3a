/**
 * A group of served copy-on-write disks is cut at one instant: a write a guest sends to one disk
 * only after another disk acknowledged its own is never in the group without that other write.
 * Before, each member chose its own instant (its own flush, then its own gate), and the members'
 * cuts could lie hundreds of milliseconds apart: in process, about one round in nine of the first
 * test found a hole in the chain.
 */
import t, { type Test } from 'tap';
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { cloned, served } from '../helpers/cow';
import { engineWithSnapshot } from '../helpers/engine';
import type { Engine } from '../../src/engine';
import type { NbdBackend } from '../../src/nbd/backend';

const BS = 64 * 1024;
const UNIT = 4096;
const BLOCKS = 128;
const DISKS = ['a', 'b', 'c', 'd'];
const SLOTS = (BLOCKS * BS) / UNIT;

function stamp(round: number, seq: number): Buffer {
  const b = Buffer.alloc(UNIT);
  b.write(`round ${round} seq ${seq}\n`);
  return b;
}

/** Seq n goes to disk n % DISKS.length, in that disk's slot n / DISKS.length. */
async function chain(disks: NbdBackend[], round: number, stop: { now: boolean }, started: () => void): Promise<number> {
  let n = 0;
  for (; n < disks.length * SLOTS && !stop.now; n++) {
    await disks[n % disks.length]!.write!(Math.floor(n / disks.length) * UNIT, stamp(round, n), false);
    if (n === 64) started();
  }
  return n;
}

/** The seqs of `round` each member's clone holds. */
function held(contents: Buffer[], round: number): Set<number> {
  const out = new Set<number>();
  contents.forEach((c, disk) => {
    for (let slot = 0; slot < SLOTS; slot++) {
      const seq = contents.length * slot + disk;
      if (c.subarray(slot * UNIT, (slot + 1) * UNIT).equals(stamp(round, seq))) out.add(seq);
    }
  });
  return out;
}

async function servedDisks(t: Test, names: string[]): Promise<{ engine: Engine; images: string; disks: NbdBackend[] }> {
  const { engine, images } = await engineWithSnapshot(t, { blockSize: BS, blocks: BLOCKS, filled: 1, disk: 'vm', snapshot: 'base' });
  const disks: NbdBackend[] = [];
  for (const name of names) {
    await engine.cloneCow('base', name);
    disks.push(await served(engine, name));
  }
  return { engine, images, disks };
}

t.test('each group of four served disks taken under a chain of dependent writes holds an unbroken prefix of it', async (t) => {
  const { engine, images, disks } = await servedDisks(t, DISKS);
  for (let round = 1; round <= 12; round++) {
    const stop = { now: false };
    let writing!: () => void;
    const started = new Promise<void>((r) => { writing = r; });
    const written = chain(disks, round, stop, writing);
    await started;
    const g = await engine.groups.create({ disks: DISKS, name: `g${round}` }).done;
    stop.now = true;
    const length = await written;
    t.same([g.status, g.consistency], ['available', 'point-in-time'], `round ${round}: the group is available, point-in-time`);
    const contents = await Promise.all(g.snapshotIds.map((id, k) => cloned(engine, images, engine.getSnapshot(id), `r${round}-${k}.raw`)));
    const have = held(contents, round);
    const highest = Math.max(...have);
    const missing = [...Array(highest + 1).keys()].filter((seq) => !have.has(seq));
    t.same(missing, [], `round ${round}: of the ${length} writes, the group holds every one up to seq ${highest}`);
  }
});

t.test('a member that fails before the instant fails the group and leaves every member writable', async (t) => {
  const { engine, disks } = await servedDisks(t, ['a', 'b']);
  const dir = engine.getDisk('b').path;
  // The open volume keeps its files; with a file in the directory's place, the member's fresh
  // layer cannot be made.
  renameSync(dir, `${dir}.away`);
  writeFileSync(dir, '');
  const g = await engine.groups.create({ disks: ['a', 'b'], name: 'g' }).done;
  unlinkSync(dir);
  renameSync(`${dir}.away`, dir);
  t.equal(g.status, 'error');
  t.match(g.error?.message, /^member snapshot of disk b /, 'the group names the member that failed, not the one it released');
  t.same(engine.listSnapshots('a').map((s) => s.name), [], 'a has no member left');
  t.same(engine.getDisk('a').cow?.layers.length, 1, 'a keeps its one layer');
  for (const [k, d] of disks.entries()) {
    await d.write!(0, stamp(0, k), false);
    const back = Buffer.alloc(UNIT);
    await d.readInto(0, UNIT, back, 0);
    t.ok(back.equals(stamp(0, k)), `disk ${k === 0 ? 'a' : 'b'} takes writes`);
  }
});

t.test('a group with an image file among its members records per-disk consistency', async (t) => {
  const { engine } = await servedDisks(t, ['a']);
  const g = await engine.groups.create({ disks: ['vm', 'a'], name: 'g' }).done;
  t.same([g.status, g.consistency], ['available', 'per-disk']);
  t.same(g.snapshotIds.map((id) => engine.getSnapshot(id).consistency), ['offline', 'point-in-time'], 'each member says its own');
});
