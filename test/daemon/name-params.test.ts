/**
 * Names on the wire: every method that names a new object (or renames one) refuses an empty, long
 * or malformed name with InvalidName, as the engine and the CLI do, and only a name that is not a
 * string at all with InvalidArgument. In process against a real engine, params included.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { lookupMethod, type CallContext } from '../../src/daemon/methods';
import { StreamChannels } from '../../src/daemon/stream-channels';
import { snapshot } from '../helpers/engine';
import { makeImage } from '../helpers/images';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

async function wire(t: Test) {
  const f = await openSmallEngine(t);
  await smallDisk(f, 'a', 2);
  const unregistered = makeImage(join(f.images, 'b.raw'), 2 * KiB64);
  await snapshot(f.engine, 'a', 'p1');
  await f.engine.cloneCow('p1', 'c');
  f.engine.policies.create({ name: 'daily', hours: [2] });
  f.engine.exports.setEndpoint('/nonexistent/nbd.sock');
  const credentials = join(f.dataDir, '..', 'credentials');
  writeFileSync(credentials, 'aws_access_key_id = AKIA\naws_secret_access_key = secret\n', { mode: 0o600 });
  const ctx: CallContext = {
    engine: f.engine, info: { version: 'test', build: 'test', pid: process.pid, startedAt: '' }, watch() {}, unwatch() {}, channels: new StreamChannels(() => undefined), peerUid: process.getuid!(),
  };
  const call = (name: string, params: Record<string, unknown>): Promise<unknown> => lookupMethod(name)!.call(ctx, params);
  // Each method with every param it needs but the name.
  const naming: Array<[string, Record<string, unknown>]> = [
    ['disk.add', { path: unregistered }],
    ['snapshot.create', { disk: 'a' }],
    ['clone.cow', { snapshot: 'p1' }],
    ['export.start', { snapshot: 'p1' }],
    ['export.start', { disk: 'c', writable: true }],
    ['policy.create', { hours: [1] }],
    ['policy.update', { policy: 'daily' }],
    ['group.create', { disks: ['a'] }],
    ['remote.add', { endpoint: 'http://127.0.0.1:9', bucket: 'bucket', credentialsFile: credentials }],
  ];
  return { ...f, call, naming };
}

t.test('an empty name is InvalidName on every method that takes one', async (t) => {
  const { call, naming } = await wire(t);
  for (const [method, params] of naming) {
    await t.rejects(call(method, { ...params, name: '' }), { code: 'InvalidName', message: /name ""/ }, `${method} ${Object.keys(params).join(',')}`);
  }
});

t.test('a name over the limit is InvalidName, however long, and the message does not echo it whole', async (t) => {
  const { call, naming } = await wire(t);
  for (const [method, params] of naming) {
    for (const length of [129, 5000, 100_000]) {
      const e = await call(method, { ...params, name: 'x'.repeat(length) }).then(() => null, (err: { code: string; message: string }) => err);
      t.match(e, { code: 'InvalidName' }, `${method} ${Object.keys(params).join(',')}, ${length} characters`);
      t.ok(e !== null && e.message.length < 400, `${method}: a short message`);
    }
  }
});

t.test('a name that is not a string is still InvalidArgument, naming the param', async (t) => {
  const { call, naming } = await wire(t);
  for (const [method, params] of naming) {
    await t.rejects(call(method, { ...params, name: 7 }), { code: 'InvalidArgument', message: /^params\.name must be a string, got 7 \(an integer\)$/ }, method);
  }
});
