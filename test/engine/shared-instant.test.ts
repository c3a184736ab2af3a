import t from 'tap';
import { SharedInstant } from '../../src/engine/shared-instant';

const running = (): AbortSignal => new AbortController().signal;
const txn = (fn: () => void): void => fn();

t.test('a member leaving while another waits with its gate closed releases it with Cancelled', async (t) => {
  const instant = new SharedInstant(new Set(['a', 'b']), txn);
  await Promise.all([instant.meet('a', 'flushed', running()), instant.meet('b', 'flushed', running())]);
  const waiting = instant.meet('a', 'held', running(), () => t.fail('no layer is listed'));
  instant.leave('b', new Error('b failed'));
  await t.rejects(waiting, { code: 'Cancelled', message: /disk b failed before the group's common instant/ });
  t.ok(instant.releasedBy('a'), 'a was released by b');
  t.notOk(instant.releasedBy('b'), 'b failed on its own');
});

t.test('a member cancelled while it waits leaves, releasing the others', async (t) => {
  const instant = new SharedInstant(new Set(['a', 'b']), txn);
  const cancel = new AbortController();
  const a = instant.meet('a', 'flushed', cancel.signal);
  cancel.abort();
  await t.rejects(a, { code: 'Cancelled' });
  await t.rejects(instant.meet('b', 'flushed', running()), { code: 'Cancelled' }, 'a member arriving later is released at once');
  t.ok(instant.releasedBy('b'));
});

t.test('the last member to close lists every layer in one transaction; a leave after that changes nothing', async (t) => {
  const listed: string[] = [];
  let transactions = 0;
  const instant = new SharedInstant(new Set(['a', 'b']), (fn) => { transactions++; fn(); });
  await Promise.all(['a', 'b'].map((d) => instant.meet(d, 'flushed', running())));
  await Promise.all(['a', 'b'].map((d) => instant.meet(d, 'held', running(), () => listed.push(d))));
  t.same([listed, transactions], [['a', 'b'], 1]);
  instant.leave('a', new Error('its push failed'));
  t.notOk(instant.releasedBy('b'), 'a failure after the instant is the member\'s own');
});

t.test('a failed listing fails every member with its error', async (t) => {
  const instant = new SharedInstant(new Set(['a', 'b']), () => { throw Object.assign(new Error('disk full'), { code: 'ENOSPC' }); });
  await Promise.all(['a', 'b'].map((d) => instant.meet(d, 'flushed', running())));
  const a = instant.meet('a', 'held', running(), () => undefined);
  const b = instant.meet('b', 'held', running(), () => undefined);
  await t.rejects(a, { code: 'NoSpace' });
  await t.rejects(b, { code: 'NoSpace' });
});

t.test('the pause runs from the first gate closed to the last reopened', async (t) => {
  const instant = new SharedInstant(new Set(['a', 'b']), txn);
  instant.held(10);
  instant.held(12);
  instant.reopen(30);
  t.equal(instant.pauseMs, null, 'not known before every member reopened');
  instant.reopen(25);
  t.equal(instant.pauseMs, 20);
});
