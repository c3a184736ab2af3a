import { readFileSync } from 'node:fs';
import t from 'tap';
import { hardLinkWarning, PROTECTED_HARDLINKS } from '../../src/daemon/hard-link-guard';

t.test('a host without hard-link protection is warned about, with the setting that fixes it', async (t) => {
  const read = (p: string): string => (p === PROTECTED_HARDLINKS ? '0\n' : '');
  t.match(hardLinkWarning(read), /fs\.protected_hardlinks is 0.*sysctl -w fs\.protected_hardlinks=1/);
});

t.test('a protected host gets no warning', async (t) => {
  t.equal(hardLinkWarning(() => '1\n'), null);
});

t.test('a host whose setting cannot be read gets no warning (no /proc, another kernel)', async (t) => {
  t.equal(hardLinkWarning(() => { throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }); }), null);
});

t.test('the warning follows this host\'s real setting', async (t) => {
  const real = readFileSync(PROTECTED_HARDLINKS, 'utf8').trim();
  t.equal(hardLinkWarning() === null, real !== '0');
});
