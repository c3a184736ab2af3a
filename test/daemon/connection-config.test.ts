import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { resolveConfig } from '../../src/daemon/config';

t.test('the per-user connection limit defaults to 256 and never exceeds --max-connections', async (t) => {
  t.equal(resolveConfig({}, '/srv').maxConnectionsPerUser, 256);
  t.equal(resolveConfig({ maxConnectionsPerUser: 8 }, '/srv').maxConnectionsPerUser, 8);
  t.equal(resolveConfig({ maxConnections: 10 }, '/srv').maxConnectionsPerUser, 10, 'one user alone may still fill the daemon');
  t.equal(resolveConfig({ maxConnections: 10, maxConnectionsPerUser: 50 }, '/srv').maxConnectionsPerUser, 10);
});

t.test('the idle timeout defaults to 900 s; 0 turns it off; a negative one is refused', async (t) => {
  t.equal(resolveConfig({}, '/srv').idleTimeoutSeconds, 900);
  t.equal(resolveConfig({ idleTimeout: 0 }, '/srv').idleTimeoutSeconds, 0);
  t.throws(() => resolveConfig({ idleTimeout: -1 }, '/srv'), { code: 'InvalidArgument', message: /--idle-timeout/ });
});

t.test('both come from the config file too, and the command line wins', async (t) => {
  const file = join(t.testdir(), 'blocksnap.json');
  writeFileSync(file, JSON.stringify({ maxConnectionsPerUser: 3, idleTimeout: 60 }));
  const fromFile = resolveConfig({ config: file }, '/srv');
  t.equal(fromFile.maxConnectionsPerUser, 3);
  t.equal(fromFile.idleTimeoutSeconds, 60);
  const overridden = resolveConfig({ config: file, maxConnectionsPerUser: 4, idleTimeout: 0 }, '/srv');
  t.equal(overridden.maxConnectionsPerUser, 4);
  t.equal(overridden.idleTimeoutSeconds, 0);
  writeFileSync(file, JSON.stringify({ idleTimeout: 'soon' }));
  t.throws(() => resolveConfig({ config: file }, '/srv'), { code: 'InvalidArgument', message: /idleTimeout/ });
});
