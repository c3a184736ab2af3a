/**
 * Bounded parallelism: at most `concurrency` calls of fn in flight, items taken in order. Memory
 * stays bounded by what `concurrency` calls hold (one block each for replication). The first
 * failure stops the taking of new items and is thrown once the calls in flight have settled, so
 * nothing keeps writing after the job reported its end.
 */
import { BlocksnapError } from '../errors';

export async function runPool<T>(items: Iterable<T>, concurrency: number, fn: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const it = items[Symbol.iterator]();
  let failure: unknown = null;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure !== null) return;
      if (signal?.aborted) {
        failure ??= new BlocksnapError('Cancelled', 'cancelled');
        return;
      }
      const next = it.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (err) {
        failure ??= err;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  if (failure !== null) throw failure;
}
