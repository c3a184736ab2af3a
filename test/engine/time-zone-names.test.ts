/**
 * A policy's time zone is stored and shown as the operator named it, once Intl has validated it,
 * not as the older name ICU resolves it to (Asia/Kolkata, not Asia/Calcutta).
 */
import t from 'tap';
import { validateTimeZone, wallClock } from '../../src/engine/time-zone';
import { openSmallEngine } from '../helpers/model';

t.test('a current name that ICU resolves to an older one is kept as given', async (t) => {
  t.equal(validateTimeZone('Asia/Kolkata'), 'Asia/Kolkata');
  t.equal(validateTimeZone('Europe/Kyiv'), 'Europe/Kyiv');
});

t.test('a name ICU knows itself takes its canonical case', async (t) => {
  t.equal(validateTimeZone('europe/berlin'), 'Europe/Berlin');
  t.equal(validateTimeZone('utc'), 'UTC');
});

t.test('an unknown name is still refused', async (t) => {
  t.throws(() => validateTimeZone('Mars/Olympus'), { code: 'InvalidArgument', message: /unknown time zone "Mars\/Olympus"/ });
});

t.test('the name kept as given tells the same wall clock as the one ICU resolves it to', async (t) => {
  const at = Date.UTC(2025, 0, 15, 12, 0, 0);
  t.same(wallClock(at, validateTimeZone('Asia/Kolkata')), wallClock(at, 'Asia/Calcutta'));
});

t.test('a policy created with --time-zone Asia/Kolkata stores and shows Asia/Kolkata', async (t) => {
  const f = await openSmallEngine(t);
  const p = f.engine.policies.create({ name: 'india', hours: [2], timeZone: 'Asia/Kolkata' });
  t.equal(p.timeZone, 'Asia/Kolkata');
  t.equal(f.engine.policies.get('india').timeZone, 'Asia/Kolkata');
});
