/**
 * Large request frames share one daemon-wide budget while they arrive (connection.ts), so that
 * many clients each sending part of a large frame cannot hold clients × maxFrameBytes. Against the
 * server with a stand-in engine and a budget of a little more than one large frame.
 */
import t, { type Test } from 'tap';
import { frame } from '../../src/daemon/protocol/frame';
import { encodeMessage } from '../../src/daemon/protocol/messages';
import { startFakeDaemon, type FakeDaemon } from './fixtures/fake-daemon';
import { RawClient } from './fixtures/raw-client';
import { waitFor } from './fixtures/wait-for';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const LARGE = 500 * 1024;

/** A request frame of about LARGE bytes (the padding makes it an InvalidArgument: any answer will do). */
function largeFrame(id: number): Buffer {
  return frame(encodeMessage({ id, method: 'version', params: { pad: 'x'.repeat(LARGE) } }));
}

async function startWithHolder(t: Test, limits = {}): Promise<{ d: FakeDaemon; holder: RawClient; rest: Buffer }> {
  const d = await startFakeDaemon({ frameBudgetBytes: LARGE + 100 * 1024, ...limits });
  t.teardown(() => d.stop());
  const holder = await RawClient.ready(d.socketPath);
  t.teardown(() => holder.close());
  const bytes = largeFrame(1);
  holder.sendBytes(bytes.subarray(0, 100 * 1024));
  await waitFor('the first large frame to be granted its bytes', () => d.server.frameBudget.inFlight > LARGE);
  return { d, holder, rest: bytes.subarray(100 * 1024) };
}

t.test('a large frame is not read while others hold the budget, and is once they are received', async (t) => {
  const { d, holder, rest } = await startWithHolder(t);
  const waiter = await RawClient.ready(d.socketPath);
  t.teardown(() => waiter.close());
  waiter.sendBytes(largeFrame(2));
  await waitFor('the second large frame to wait for budget', () => d.server.frameBudget.waiting === 1);
  await sleep(200);
  t.notOk(waiter.messages.some((m) => m.id === 2), 'the waiting frame is not answered while the budget is held');
  holder.sendBytes(rest);
  t.ok(await holder.response(1), 'the holder is answered');
  t.ok(await waiter.response(2), 'the waiting frame is read and answered once the budget is free');
  await waitFor('every byte to be given back', () => d.server.frameBudget.inFlight === 0);
});

t.test('small requests are served while the budget is held', async (t) => {
  const { d } = await startWithHolder(t);
  const waiter = await RawClient.ready(d.socketPath);
  t.teardown(() => waiter.close());
  waiter.sendBytes(largeFrame(2));
  await waitFor('the large frame to wait for budget', () => d.server.frameBudget.waiting === 1);
  const small = await RawClient.ready(d.socketPath);
  t.teardown(() => small.close());
  small.send({ id: 3, method: 'version' });
  t.match(await small.response(3), { result: { protocol: 1 } });
});

t.test('a frame that never finishes gives its budget back at the frame deadline', async (t) => {
  const { d, holder } = await startWithHolder(t, { frameTimeoutMs: 300 });
  const waiter = await RawClient.ready(d.socketPath);
  t.teardown(() => waiter.close());
  waiter.sendBytes(largeFrame(2));
  t.match(await holder.response(null), { error: { code: 'ProtocolError', message: /did not arrive whole/ } });
  t.ok(await waiter.response(2), 'the waiting frame is read once the stalled one is dropped');
});

t.test('a client that hangs up while waiting for budget is dropped at its turn, holding nothing', async (t) => {
  const { d, holder, rest } = await startWithHolder(t);
  const waiter = await RawClient.ready(d.socketPath);
  waiter.sendBytes(largeFrame(2));
  await waitFor('the large frame to wait for budget', () => d.server.frameBudget.waiting === 1);
  waiter.close();
  holder.sendBytes(rest);
  t.ok(await holder.response(1));
  // Its socket is not read while it waits; granted, it is read, found closed, and gives the bytes back.
  await waitFor('the client to be dropped', () => d.server.clientCount === 1);
  await waitFor('every byte to be given back', () => d.server.frameBudget.inFlight === 0 && d.server.frameBudget.waiting === 0);
  t.pass('nothing held or queued');
});
