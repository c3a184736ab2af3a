/**
 * The client's end of a snapshot stream through the socket (`snapshot export -o -`,
 * `snapshot import -i -`; docs/protocol.md, *Streams*). Memory stays bounded both ways: export
 * acknowledges a chunk only once stdout has taken it, so a slow reader slows the daemon's job;
 * import keeps at most the window of chunks unanswered, so a fast stdin waits for the job.
 */
import { BlocksnapError } from '../errors';
import type { DaemonClient } from '../daemon/client';
import type { DataEvent } from '../daemon/protocol/messages';
import { STREAM_CHUNK_BYTES, STREAM_WINDOW_BYTES } from '../daemon/stream-channels';
import type { Job } from '../engine/types';
import { followJob, noteEarlyInterrupt } from './follow';

const STREAM_ID = 'stdio';

/**
 * Starts `snapshot.export` into a channel and copies its data to `out` (stdout) in order. Resolves
 * with the finished job once every byte has been written to `out`.
 */
export async function exportToStream(
  client: DaemonClient, out: NodeJS.WritableStream, params: Record<string, unknown>, label: string,
): Promise<Job> {
  let expected = 0;
  let broken: BlocksnapError | null = null;
  const fail = (err: BlocksnapError): void => {
    broken ??= err;
    client.close(); // the daemon sees the connection close and ends the job (StreamClosed)
  };
  const onError = (err: NodeJS.ErrnoException): void => fail(new BlocksnapError('StreamClosed', `cannot write the stream: ${err.code ?? err.message}`));
  out.on('error', onError);
  const onData = (e: DataEvent): void => {
    if (e.stream !== STREAM_ID || broken) return;
    if (e.seq !== expected) {
      fail(new BlocksnapError('ProtocolError', `stream chunk ${e.seq} arrived where ${expected} was expected`));
      return;
    }
    expected++;
    out.write(e.data, (err) => {
      if (err) return; // reported through 'error'
      client.call('stream.ack', { stream: STREAM_ID, bytes: e.data.length }).catch(() => undefined);
    });
  };
  client.on('data', onData);
  const early = noteEarlyInterrupt();
  try {
    let done: Job;
    try {
      // stdout can fail before the daemon has answered (a full disk takes the first chunk's
      // write): fail() then closes the connection under this call, and what the operator must
      // see is the write's error, not the closed connection it caused.
      const job = await client.call<Job>('snapshot.export', { ...params, stream: STREAM_ID, wait: false });
      // A stream has no one to hand over to: Ctrl-C cancels the job, with no question asked.
      done = await followJob(client, job, { label, detachOnInterrupt: false, interactive: false, endsWithConnection: true, interruptedBefore: early.interrupted });
    } catch (err) {
      throw broken ?? err;
    }
    if (broken) throw broken;
    // Every chunk arrived before the job's end; wait until stdout has taken the last one.
    await new Promise<void>((resolve) => out.write('', () => resolve()));
    return done;
  } finally {
    early.dispose();
    client.off('data', onData);
  }
}

/**
 * Starts `snapshot.import` from a channel and feeds it `input` (stdin) in chunks, at most the
 * window unanswered. Resolves with the finished job.
 */
export async function importFromStream(
  client: DaemonClient, input: NodeJS.ReadableStream & { destroy(): void }, params: Record<string, unknown>, label: string,
): Promise<Job> {
  const early = noteEarlyInterrupt();
  let job: Job;
  try {
    job = await client.call<Job>('snapshot.import', { ...params, stream: STREAM_ID, wait: false });
  } catch (err) {
    early.dispose();
    throw err;
  }
  const pump = (async (): Promise<void> => {
    const inFlight: Array<{ answered: Promise<unknown>; bytes: number }> = [];
    let unanswered = 0;
    const send = async (data: Buffer): Promise<void> => {
      while (unanswered + data.length > STREAM_WINDOW_BYTES) {
        const oldest = inFlight.shift()!;
        await oldest.answered;
        unanswered -= oldest.bytes;
      }
      const answered = client.call('stream.data', { stream: STREAM_ID, data });
      answered.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
      inFlight.push({ answered, bytes: data.length });
      unanswered += data.length;
    };
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for await (const piece of input) {
      let chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
      while (pendingBytes + chunk.length >= STREAM_CHUNK_BYTES) {
        const take = STREAM_CHUNK_BYTES - pendingBytes;
        await send(Buffer.concat([...pending, chunk.subarray(0, take)]));
        chunk = chunk.subarray(take);
        pending = [];
        pendingBytes = 0;
      }
      if (chunk.length > 0) { pending.push(chunk); pendingBytes += chunk.length; }
    }
    if (pendingBytes > 0) await send(Buffer.concat(pending));
    await Promise.all(inFlight.map((f) => f.answered));
    await client.call('stream.data', { stream: STREAM_ID, end: true });
  })();
  // A failed pump means the job has ended (or the connection has): the job's own error says why.
  const pumped = pump.catch(() => input.destroy());
  try {
    // As for an export: the stream ends with this connection, so Ctrl-C cancels, asking nothing.
    return await followJob(client, job, { label, detachOnInterrupt: false, interactive: false, endsWithConnection: true, interruptedBefore: early.interrupted });
  } finally {
    early.dispose();
    input.destroy();
    await pumped;
  }
}
