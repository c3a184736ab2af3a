import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { resolveConfig } from '../../src/daemon/config';
import { sweepIntervalMs } from '../../src/daemon/idle-block-files';

t.test('kept block files are closed after 30 s unread by default; 0 and more than a day are refused', async (t) => {
  t.equal(resolveConfig({}, '/srv').blockFileIdleSeconds, 30);
  t.equal(resolveConfig({ blockFileIdle: 1 }, '/srv').blockFileIdleSeconds, 1);
  t.throws(() => resolveConfig({ blockFileIdle: 0 }, '/srv'), { code: 'InvalidArgument', message: /--block-file-idle must be a whole number of seconds from 1 to 86400/ });
  t.throws(() => resolveConfig({ blockFileIdle: 86_401 }, '/srv'), { code: 'InvalidArgument' });
});

t.test('the idle period comes from the config file too, and the command line wins', async (t) => {
  const file = join(t.testdir(), 'blocksnap.json');
  writeFileSync(file, JSON.stringify({ blockFileIdle: 120 }));
  t.equal(resolveConfig({ config: file }, '/srv').blockFileIdleSeconds, 120);
  t.equal(resolveConfig({ config: file, blockFileIdle: 5 }, '/srv').blockFileIdleSeconds, 5);
});

t.test('the sweep looks every half period, from 0.5 s to 5 s', async (t) => {
  t.equal(sweepIntervalMs(30_000), 5_000);
  t.equal(sweepIntervalMs(4_000), 2_000);
  t.equal(sweepIntervalMs(100), 500);
});
