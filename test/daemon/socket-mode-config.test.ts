/** --socket-mode (config.ts): permission bits only, and the defaults with and without a group. */
import t from 'tap';
import { resolveConfig } from '../../src/daemon/config';

t.test('the mode is 0600 without a socket group and 0660 with one', async (t) => {
  t.equal(resolveConfig({}, '/srv').socketMode, 0o600);
  t.equal(resolveConfig({ socketGroup: 'kvm' }, '/srv').socketMode, 0o660);
});

t.test('a mode is taken with or without its leading 0', async (t) => {
  t.equal(resolveConfig({ socketMode: '0640' }, '/srv').socketMode, 0o640);
  t.equal(resolveConfig({ socketMode: '640' }, '/srv').socketMode, 0o640);
});

t.test('setuid, setgid and sticky bits are refused as such, not as a mode that is not octal', async (t) => {
  for (const mode of ['4770', '2770', '1660']) {
    t.throws(() => resolveConfig({ socketMode: mode }, '/srv'),
      { code: 'InvalidArgument', message: `--socket-mode ${mode} is refused: setuid, setgid and sticky bits mean nothing on a socket; give the permission bits only, such as "0660"` }, mode);
  }
});

t.test('a mode that is not octal is refused as such', async (t) => {
  for (const mode of ['999', '0o660', '66', '07770', 'rw-rw----']) {
    t.throws(() => resolveConfig({ socketMode: mode }, '/srv'), { code: 'InvalidArgument', message: '--socket-mode must be an octal mode string such as "0660"' }, mode);
  }
});
