import t from 'tap';
import { BlocksnapError } from '../../src/errors';
import { Lease, leaseKey, listLeases, type LeaseTiming } from '../../src/remote/leases';
import { MemoryStore } from './memory-store';

const timing: LeaseTiming = { ttlMs: 2000, skewMs: 200, waitMs: 1500, pollMs: 20 };
/** For a holder that is meant to get its lease in the end: a loaded machine's late timers must not make it give up. */
const patient: LeaseTiming = { ...timing, waitMs: 60_000 };
const J = (n: number): string => `j-${n.toString(16).padStart(16, '0')}`;

t.test('a writer waits while a gc holds its lease, and proceeds once it is released', async (t) => {
  const s = new MemoryStore();
  const gc = await Lease.gc(s, 'p', 'hosta', J(1), { timing });
  let acquired = false;
  const writer = Lease.writer(s, 'p', 'hostb', J(2), { timing: patient }).then((l) => { acquired = true; return l; });
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(acquired, 'no writer lease while gc holds the remote');
  t.notOk([...s.objects.keys()].some((k) => k.includes('writer.')), 'the waiting writer withdrew its own lease');
  await gc.release();
  const w = await writer;
  t.ok(acquired);
  t.same((await listLeases(s, 'p', timing)).map((l) => l.kind), ['writer']);
  await w.release();
  t.equal(s.objects.size, 0, 'released leases are deleted');
});

t.test('gc waits for live writer leases; a writer that outlasts the wait makes gc fail RemoteBusy', async (t) => {
  const s = new MemoryStore();
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing });
  const waits: number[] = [];
  await t.rejects(Lease.gc(s, 'p', 'hosta', J(1), { timing, onWait: (ws) => waits.push(ws.length) }), { code: 'RemoteBusy' });
  t.ok(waits.length > 3 && waits.every((n) => n === 1), 'gc polled while the writer lived');
  t.same((await listLeases(s, 'p', timing)).map((l) => l.kind), ['writer'], 'the failed gc removed its lease');
  const gcLater = Lease.gc(s, 'p', 'hosta', J(3), { timing: patient });
  setTimeout(() => void w.release(), 100);
  const g = await gcLater;
  t.equal(g.kind, 'gc', 'gc proceeds once the writer is done');
  await g.release();
});

t.test('a writer clears stale leases of its own host but keeps those of running jobs and other hosts', async (t) => {
  const s = new MemoryStore();
  const dead = await Lease.writer(s, 'p', 'hosta', J(1), { timing });
  const running = await Lease.writer(s, 'p', 'hosta', J(2), { timing });
  const other = await Lease.writer(s, 'p', 'hostb', J(3), { timing });
  // The first "crashed": its object stays. A new writer of hosta knows J(2) is still running.
  (dead as unknown as { released: boolean }).released = true;
  const fresh = await Lease.writer(s, 'p', 'hosta', J(4), { timing, isStale: (id) => id !== J(2) && id !== J(4) });
  const jobs = (await listLeases(s, 'p', timing)).map((l) => l.jobId).sort();
  t.same(jobs, [J(2), J(3), J(4)]);
  for (const l of [running, other, fresh]) await l.release();
});

t.test('a gc deletes stale leases of its own host instead of waiting for them, and waits for the others', async (t) => {
  const s = new MemoryStore();
  const other = await Lease.writer(s, 'p', 'hostb', J(3), { timing });
  // Left by a crashed daemon of hosta: a replication and a gc.
  await s.put(leaseKey('p', 'writer', 'hosta', J(1)), Buffer.from('{}\n'));
  await s.put(leaseKey('p', 'gc', 'hosta', J(2)), Buffer.from('{}\n'));
  const asked: string[] = [];
  const isStale = (id: string): boolean => { asked.push(id); return id !== J(5); };
  await t.rejects(Lease.gc(s, 'p', 'hosta', J(4), { timing: { ...timing, waitMs: 100 }, isStale }), { code: 'RemoteBusy', message: /host hostb/ },
    'another host\'s writer is waited for, whatever its job id');
  t.same((await listLeases(s, 'p', timing)).map((l) => l.jobId), [J(3)], 'the stale leases are gone');
  t.notOk(asked.includes(J(3)), 'only this host\'s leases are asked about');
  await other.release();
  const running = await Lease.writer(s, 'p', 'hosta', J(5), { timing });
  const gc = Lease.gc(s, 'p', 'hosta', J(6), { timing: patient, isStale });
  await new Promise((r) => setTimeout(r, 100));
  t.ok([...s.objects.keys()].some((k) => k.includes(J(5))), 'a running job of this host keeps its lease, and gc waits for it');
  await running.release();
  await (await gc).release();
});

t.test('an expired lease no longer counts, and a holder that could not renew refuses its next step', async (t) => {
  const s = new MemoryStore();
  const short: LeaseTiming = { ...timing, ttlMs: 300, skewMs: 50 };
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing: short });
  w.assertHeld();
  // Stop renewals as a stalled process would: the lease object keeps its old expiry.
  (w as unknown as { released: boolean }).released = true;
  await new Promise((r) => setTimeout(r, 450));
  t.throws(() => w.assertHeld(), { code: 'RemoteBusy' });
  const leases = await listLeases(s, 'p', short);
  t.equal(leases.length, 1);
  t.notOk(leases[0]!.live, 'expired plus skew: dead to other hosts');
  const g = await Lease.gc(s, 'p', 'hosta', J(1), { timing: short });
  t.pass('gc does not wait for an expired writer');
  await g.release();
});

t.test('a writer waiting on a gc its own daemon started meanwhile leaves that gc\'s lease alone', async (t) => {
  const s = new MemoryStore();
  const running = new Set<string>();
  const other = await Lease.gc(s, 'p', 'hostb', J(1), { timing });
  const writer = Lease.writer(s, 'p', 'hosta', J(2), { timing: patient, isStale: (id) => !running.has(id) });
  await new Promise((r) => setTimeout(r, 60));
  // This host's gc starts while the writer waits for the other host's gc.
  running.add(J(3));
  const mine = Lease.gc(s, 'p', 'hosta', J(3), { timing: patient });
  await new Promise((r) => setTimeout(r, 60));
  await other.release();
  await new Promise((r) => setTimeout(r, 100));
  t.ok([...s.objects.keys()].some((k) => k.includes(J(3))), 'the running gc keeps its lease');
  const g = await mine;
  await g.release();
  running.delete(J(3));
  const w = await writer;
  t.equal(w.kind, 'writer', 'the writer goes on once that gc is done');
  await w.release();
});

/** A step that runs until its signal aborts it, as a request with retries does against a store that does not answer. */
function stalledStep(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new BlocksnapError('Cancelled', 'request aborted')), { once: true }));
}

t.test('a step under way when the lease can no longer be renewed is aborted with RemoteBusy', async (t) => {
  const s = new MemoryStore();
  const short: LeaseTiming = { ...timing, ttlMs: 300, skewMs: 50 };
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing: short });
  // From now on every renewal fails, as in a partition from the store.
  s.put = async () => { throw new BlocksnapError('RemoteUnreachable', 'no route to the store'); };
  await t.rejects(w.whileHeld(undefined, stalledStep), { code: 'RemoteBusy', message: /was not renewed for .* \(no route to the store\); rerun to continue/ });
  await w.release();
});

t.test('renewals keep a step going past the lease lifetime', async (t) => {
  const s = new MemoryStore();
  // Renewals every 600 ms against a 2.7 s limit: slack for a loaded machine's late timers, where
  // the event loop of this process can stall for most of a second.
  const short: LeaseTiming = { ...timing, ttlMs: 3000, skewMs: 300 };
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing: short });
  const slow = (signal: AbortSignal): Promise<string> => new Promise((resolve, reject) => {
    const done = setTimeout(() => resolve('landed'), 2.5 * short.ttlMs);
    signal.addEventListener('abort', () => { clearTimeout(done); reject(new Error('aborted')); }, { once: true });
  });
  t.equal(await w.whileHeld(undefined, slow), 'landed');
  await w.release();
});

t.test('a step cancelled by its job fails with its own error, not the lease\'s', async (t) => {
  const s = new MemoryStore();
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing });
  const job = new AbortController();
  const step = w.whileHeld(job.signal, stalledStep);
  job.abort();
  await t.rejects(step, { code: 'Cancelled' });
  await w.release();
});


t.test('a lease that went unrenewed past its lifetime stays lost when renewals succeed again', async (t) => {
  const s = new MemoryStore();
  const short: LeaseTiming = { ...timing, ttlMs: 300, skewMs: 50 };
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing: short });
  const put = s.put.bind(s);
  s.put = async () => { throw new BlocksnapError('RemoteUnreachable', 'no route to the store'); };
  await new Promise((r) => setTimeout(r, 450));
  t.throws(() => w.assertHeld(), { code: 'RemoteBusy' });
  // The store answers again and the lease is rewritten, but a gc of another host may have found
  // it dead meanwhile and be sweeping now.
  s.put = put;
  // The next renewal (every 60 ms, later on a loaded machine) rewrites it.
  for (const until = Date.now() + 30_000; !(await listLeases(s, 'p', short))[0]!.live && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
  t.ok((await listLeases(s, 'p', short))[0]!.live, 'the lease object is live again');
  t.throws(() => w.assertHeld(), { code: 'RemoteBusy' }, 'but its holder may not go on');
  await t.rejects(w.whileHeld(undefined, async () => 'landed'), { code: 'RemoteBusy' });
  await w.release();
});

t.test('a lease released while a renewal is under way is not written again by that renewal', async (t) => {
  const s = new MemoryStore();
  const short: LeaseTiming = { ...timing, ttlMs: 500, skewMs: 50 };
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing: short });
  const put = s.put.bind(s);
  let inFlight!: () => void;
  const renewing = new Promise<void>((r) => { inFlight = r; });
  // A slow store: the renewal's request arrives, and is applied, after the deletion was sent.
  s.put = async (key, body) => {
    inFlight();
    await new Promise((r) => setTimeout(r, 150));
    await put(key, body);
  };
  const alive = setInterval(() => undefined, 50); // renewals run on unref'd timers
  await renewing;
  await w.release();
  clearInterval(alive);
  await new Promise((r) => setTimeout(r, 200));
  t.same(await listLeases(s, 'p', short), [], 'no lease object left to hold other hosts off');
});

t.test('a wall clock stepped back does not stretch a lease its holder could not renew', async (t) => {
  const s = new MemoryStore();
  const short: LeaseTiming = { ...timing, ttlMs: 300, skewMs: 50 };
  const w = await Lease.writer(s, 'p', 'hostb', J(2), { timing: short });
  s.put = async () => { throw new BlocksnapError('RemoteUnreachable', 'no route to the store'); };
  const now = Date.now;
  Date.now = () => now() - 60_000; // NTP steps the clock back a minute
  t.teardown(() => { Date.now = now; });
  await new Promise((r) => setTimeout(r, 450));
  t.throws(() => w.assertHeld(), { code: 'RemoteBusy' }, 'the lease ran out all the same');
  Date.now = now;
  await w.release();
});
