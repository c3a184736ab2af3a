/**
 * Gathers a volume's small reads or writes into batches: one native call (one hand-off to the
 * libuv pool and back) per batch instead of per request. A client with many requests in flight
 * (a guest, an NBD client at queue depth 16) otherwise pays two thread wake-ups per 4 KiB
 * request, and on a VM host waking an idle vCPU costs more than the I/O itself.
 *
 * A request goes out at once while fewer than `maxInFlight` batches are running, so a lone one
 * waits for nothing; requests that arrive meanwhile queue and leave together when a batch ends.
 * Each request keeps its own outcome: one that fails rejects only its own promise.
 */

/** Runs the batch; resolves undefined if all succeeded, else each failed item's error at its index. */
export type SubmitBatch<T> = (items: T[]) => Promise<Array<unknown> | undefined>;

interface Queued<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class IoBatches<T> {
  private readonly queue: Array<Queued<T>> = [];
  private running = 0;

  constructor(
    private readonly submit: SubmitBatch<T>,
    /** Batches in the pool at once: enough to keep every core busy, few enough to gather. */
    private readonly maxInFlight: number,
    /** Requests in one batch at most. */
    private readonly maxItems: number,
  ) {}

  run(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxItems);
      this.running++;
      void this.settle(batch).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async settle(batch: Array<Queued<T>>): Promise<void> {
    let outcomes: Array<unknown> | undefined;
    try {
      outcomes = await this.submit(batch.map((q) => q.item));
    } catch (err) {
      // The batch as a whole was refused (the volume closed, a bad argument): so was each request.
      for (const q of batch) q.reject(err);
      return;
    }
    batch.forEach((q, i) => {
      const err = outcomes?.[i];
      if (err === undefined) q.resolve(); else q.reject(err);
    });
  }
}
