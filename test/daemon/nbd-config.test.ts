import t from 'tap';
import { resolveConfig } from '../../src/daemon/config';

t.test('--nbd-socket is optional, resolved against the working directory, and never the control socket', async (t) => {
  t.equal(resolveConfig({ socket: '/run/b/d.sock' }, '/srv').nbdSocket, undefined, 'no NBD unless asked');
  t.equal(resolveConfig({ socket: '/run/b/d.sock', nbdSocket: 'nbd.sock' }, '/srv').nbdSocket, '/srv/nbd.sock');
  t.throws(() => resolveConfig({ socket: '/run/b/d.sock', nbdSocket: '/run/b/d.sock' }, '/srv'), { code: 'InvalidArgument', message: /must differ/ });
  t.throws(() => resolveConfig({ nbdSocket: `/${'x'.repeat(200)}` }, '/srv'), { code: 'InvalidArgument', message: /longer than/ });
});
