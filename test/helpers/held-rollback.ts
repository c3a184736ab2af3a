import type { Test } from 'tap';
import type { Engine } from '../../src/engine';
import type { Job } from '../../src/engine/types';
import type { applyImage } from '../../src/native';
import { fillBlock } from './images';

/**
 * Test hook: the next raw rollback stops at the start of its apply, after it journaled itself and
 * before it reads or writes the image, until `release()`: the state a long rollback is in for most
 * of its run, held as long as a test needs it. `reached` resolves once the rollback waits there.
 */
export function holdRawRollback(t: Test): { reached: Promise<void>; release(): void } {
  const native = require('../../src/native') as { applyImage: typeof applyImage };
  const real = native.applyImage;
  let arrived!: () => void;
  const reached = new Promise<void>((resolve) => { arrived = resolve; });
  let go!: () => void;
  const gate = new Promise<void>((resolve) => { go = resolve; });
  native.applyImage = async (o) => {
    native.applyImage = real;
    arrived();
    await gate;
    return real(o);
  };
  t.teardown(() => { native.applyImage = real; go(); });
  return { reached, release: () => go() };
}

/**
 * A raw rollback of `disk` to `snapshot` held mid-way (holdRawRollback), after block 0 of its image
 * `img` was changed so that it has a block to write: the disk's journal is set and its job runs.
 */
export async function runningRollback(t: Test, engine: Engine, img: string, disk: string, snapshot: string, blockSize: number): Promise<{ rollback: Job; release(): void }> {
  fillBlock(img, 0, blockSize, 'changed');
  const held = holdRawRollback(t);
  const rollback = engine.startRollback(disk, snapshot);
  await held.reached;
  return { rollback, release: held.release };
}
