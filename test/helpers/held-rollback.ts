import type { Test } from 'tap';
import type { applyImage } from '../../src/native';

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
