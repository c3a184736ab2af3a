import type { InChannel } from '../../src/engine/streams';

/**
 * The sending end of an import's stream that hands out `bytes` up to `upTo`, then sends nothing,
 * without closing, until resumed (a client stalled mid-stream, an ssh link that hangs).
 */
export function stalledSender(bytes: Buffer, upTo: number) {
  let at = 0;
  let limit = upTo;
  let waiting: { resolve(): void; reject(err: Error): void } | null = null;
  let onStall: (() => void) | null = null;
  const serve = (max: number): Buffer => {
    const out = bytes.subarray(at, Math.min(limit, at + max));
    at += out.length;
    return out;
  };
  const channel: InChannel = {
    read(max) {
      // At the end, an empty read is its end.
      if (at < limit || at === bytes.length) return Promise.resolve(serve(max));
      return new Promise((resolve, reject) => {
        waiting = { resolve: () => resolve(serve(max)), reject };
        onStall?.();
        onStall = null;
      });
    },
    close(err) { waiting?.reject(err); waiting = null; },
  };
  return {
    channel,
    /** Sends the rest of the stream. */
    resume(): void { limit = bytes.length; const w = waiting; waiting = null; w?.resolve(); },
    served: (): number => at,
    /** Resolves once the receiver, having taken everything up to `upTo`, waits for more. */
    stalled: (): Promise<void> => new Promise((resolve) => { if (waiting) resolve(); else onStall = resolve; }),
  };
}
