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

/**
 * runPool for work in two stages, a read and a send (replication: read a block from the store,
 * verified, then PUT it): each of `concurrency` slots reads its next item while its current one is
 * being sent, so the sends run back to back instead of waiting for a read between them. Memory:
 * at most 2 × `concurrency` items' data. Failure and cancellation as runPool.
 */
export async function runPipelined<T, D>(
  items: Iterable<T>, concurrency: number, read: (item: T) => Promise<D>, send: (item: T, data: D) => Promise<void>, signal?: AbortSignal,
): Promise<void> {
  const it = items[Symbol.iterator]();
  let failure: unknown = null;
  const take = (): { item: T; data: Promise<D> } | null => {
    if (failure !== null) return null;
    if (signal?.aborted) {
      failure ??= new BlocksnapError('Cancelled', 'cancelled');
      return null;
    }
    const next = it.next();
    if (next.done) return null;
    const data = read(next.value);
    data.catch(() => undefined); // awaited below; a read abandoned after a failure must not go unhandled
    return { item: next.value, data };
  };
  const slot = async (): Promise<void> => {
    let cur = take();
    while (cur !== null) {
      try {
        const data = await cur.data;
        const next = take();
        await send(cur.item, data);
        cur = next;
      } catch (err) {
        failure ??= err;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, slot));
  if (failure !== null) throw failure;
}
