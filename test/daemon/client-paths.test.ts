/**
 * A client that is neither root nor the daemon's user gets, for the paths it names, only what its
 * own user could do (fixtures/client-context.ts calls the method table as such a client).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Disk, Job } from '../../src/engine/types';
import { clientFixture as fixture, notRoot, ROOT, USER, userSnapshot } from './fixtures/client-context';

t.test('a client may not register a root-only file', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const path = f.image('secret.raw', ROOT, 0o600);
  await t.rejects(f.call('disk.add', { path }), { code: 'NotAuthorized', message: new RegExp(`^uid ${USER.uid} may not read ${path}`), details: { uid: USER.uid, right: 'read' } });
  t.same(f.engine.listDisks(), []);
});

t.test('a client may not register a file it may read but not write, as a rollback writes it', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const path = f.image('shared.raw', ROOT, 0o644);
  await t.rejects(f.call('disk.add', { path }), { code: 'NotAuthorized', message: /may not write/, details: { right: 'write' } });
});

t.test('a client registers a file of its own', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const path = f.image('mine.raw', USER, 0o600);
  t.match(await f.call<Disk>('disk.add', { path, name: 'mine' }), { name: 'mine', path });
});

t.test('a client registers a file its group may read and write', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const path = f.image('group.raw', { uid: 0, gid: 23411 }, 0o660);
  await f.call<Disk>('disk.add', { path, name: 'g' }, { uid: USER.uid, credentials: { ...USER, groups: [23400, 23411] } });
  t.equal(f.engine.listDisks().length, 1);
});

t.test('a client may not register a qcow2 image whose backing file it may not read', { skip: notRoot || spawnSync('qemu-img', ['--version']).status !== 0 ? 'needs root and qemu-img' : false }, async (t) => {
  const f = await fixture(t);
  const base = f.image('base.raw', ROOT, 0o600);
  const top = join(f.images, 'top.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top]);
  chownSync(top, USER.uid, USER.gid);
  await t.rejects(f.call('disk.add', { path: top }), { code: 'NotAuthorized', message: new RegExp(`may not read ${base}`) });
});

t.test('a client may not relocate its disk onto a file it may not write', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  await f.call<Disk>('disk.add', { path: f.image('mine.raw', USER, 0o600), name: 'mine' });
  const other = f.image('other.raw', ROOT, 0o644);
  await t.rejects(f.call('disk.relocate', { disk: 'mine', path: other }), { code: 'NotAuthorized', message: /may not write/ });
  t.match(f.engine.getDisk('mine'), { path: join(f.images, 'mine.raw') }, 'the disk still reads its own file');
});

t.test('a client may not clone into a root-only directory', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const snap = await userSnapshot(f);
  const priv = f.dir('priv', ROOT, 0o700);
  await t.rejects(f.call('clone', { snapshot: snap, path: join(priv, 'new.raw') }), { code: 'NotAuthorized', message: new RegExp(`may not create .*search directory ${priv}`) });
});

t.test('a client may not clone into a directory it may search but not write', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const snap = await userSnapshot(f);
  const ro = f.dir('ro', ROOT, 0o755);
  await t.rejects(f.call('clone', { snapshot: snap, path: join(ro, 'new.raw') }), { code: 'NotAuthorized', message: new RegExp(`write directory ${ro}`) });
});

t.test('a client may not clone into its own directory below one it may not search', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const snap = await userSnapshot(f);
  const priv = f.dir('priv', ROOT, 0o700);
  const inner = f.dir('priv/mine', USER, 0o755);
  await t.rejects(f.call('clone', { snapshot: snap, path: join(inner, 'new.raw') }), { code: 'NotAuthorized', message: new RegExp(`search directory ${priv}`) });
});

t.test('what a client may not search is refused alike whether the file is there or not', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const priv = f.dir('priv', ROOT, 0o700);
  const there = f.image('priv/there.raw', USER, 0o600);
  const answers = await Promise.all([there, join(priv, 'missing.raw')].map((path) =>
    f.call('disk.add', { path }).then(() => null, (e: { code: string; message: string }) => [e.code, e.message.replace(/[^ ]*\.raw/, 'X')].join(' '))));
  t.match(answers[0], /^NotAuthorized uid 23456 may not search directory/);
  t.equal(answers[1], answers[0]);
});

t.test('a clone, a flattened disk and a stream file made for a client are its own', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const snap = await userSnapshot(f);
  const mine = f.dir('mine', USER, 0o700);
  for (const [method, params] of [
    ['clone', { snapshot: snap, path: join(mine, 'c.raw') }],
    ['clone', { snapshot: snap, path: join(mine, 'c.qcow2'), format: 'qcow2' }],
    ['snapshot.export', { snapshot: snap, path: join(mine, 's.bsnap') }],
  ] as const) {
    const job = await f.call<Job>(method, { ...params, wait: true });
    t.equal(job.state, 'succeeded', `${method} ${params.path}`);
    t.match(statSync(params.path), { uid: USER.uid, gid: USER.gid, mode: 0o100600 }, `${params.path} is the client's`);
  }
  await f.call('clone.cow', { snapshot: snap, name: 'cow' });
  const flat = join(mine, 'flat.raw');
  t.equal((await f.call<Job>('disk.flatten', { disk: 'cow', path: flat, wait: true })).state, 'succeeded');
  t.match(statSync(flat), { uid: USER.uid, gid: USER.gid });
});

t.test('a client imports only a stream file it may read', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const snap = await userSnapshot(f);
  const stream = join(f.images, 's.bsnap');
  t.equal((await f.call<Job>('snapshot.export', { snapshot: snap, path: stream, wait: true }, { uid: 0 })).state, 'succeeded');
  t.equal(statSync(stream).uid, 0, 'exported by root, the file is root\'s');
  await t.rejects(f.call('snapshot.import', { path: stream, disk: 'mine' }), { code: 'NotAuthorized', message: /may not read/ });
});

t.test('a client whose groups are unknown may name no path', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const path = f.image('mine.raw', USER, 0o600);
  await t.rejects(f.call('disk.add', { path }, { uid: USER.uid }), { code: 'NotAuthorized', message: /cannot tell those of uid 23456/ });
});

t.test('root is not checked, and its files stay its own', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const path = f.image('secret.raw', ROOT, 0o600);
  await f.call<Disk>('disk.add', { path, name: 'secret' }, { uid: 0 });
  await f.call<Job>('snapshot.create', { disk: 'secret', name: 'r1', wait: true }, { uid: 0 });
  const priv = f.dir('priv', ROOT, 0o700);
  const job = await f.call<Job>('clone', { snapshot: 'r1', path: join(priv, 'c.raw'), wait: true }, { uid: 0 });
  t.equal(job.state, 'succeeded');
  t.match(statSync(join(priv, 'c.raw')), { uid: 0, gid: 0 });
});

t.test('a file with the setuid or setgid bit is no disk image, whoever asks', async (t) => {
  const f = await fixture(t);
  const me = process.getuid!();
  for (const mode of [0o4755, 0o2755]) {
    const path = f.image(`prog-${mode.toString(8)}`, { uid: me, gid: process.getgid!() }, mode);
    await t.rejects(f.call('disk.add', { path }, { uid: me }), { code: 'NotAnImage', message: new RegExp(mode === 0o4755 ? 'setuid bit' : 'setgid bit') });
  }
  await f.call<Disk>('disk.add', { path: f.image('plain.raw', { uid: me, gid: process.getgid!() }, 0o600), name: 'plain' }, { uid: me });
  await t.rejects(f.call('disk.relocate', { disk: 'plain', path: join(f.images, 'prog-4755') }, { uid: me }), { code: 'NotAnImage', message: /setuid bit/ });
});

t.test('a rollback refuses a disk file given the setuid bit since it was registered', async (t) => {
  const f = await fixture(t);
  const me = { uid: process.getuid!(), gid: process.getgid!() };
  const path = f.image('d.raw', me, 0o600);
  await f.call<Disk>('disk.add', { path, name: 'd' }, { uid: me.uid });
  await f.call<Job>('snapshot.create', { disk: 'd', name: 'd1', wait: true }, { uid: me.uid });
  chmodSync(path, 0o4755);
  await t.rejects(f.call('rollback', { disk: 'd', snapshot: 'd1', wait: true }, { uid: me.uid }), { code: 'NotAnImage', message: /setuid bit/ });
  t.equal(statSync(path).mode & 0o7777, 0o4755);
});

t.test('an ACL is evaluated as the kernel does: a named user entry, limited by the mask', { skip: notRoot || spawnSync('setfacl', ['--version']).status !== 0 ? 'needs root and setfacl' : false }, async (t) => {
  const f = await fixture(t);
  const path = f.image('acl.raw', ROOT, 0o600);
  const setfacl = (spec: string): void => {
    const r = spawnSync('setfacl', ['-m', spec, path], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
  };
  setfacl(`u:${USER.uid}:rw`);
  setfacl('m::r');
  await t.rejects(f.call('disk.add', { path }), { code: 'NotAuthorized', message: /may not write .*with an ACL/ }, 'the mask withholds write');
  setfacl('m::rw');
  t.match(await f.call<Disk>('disk.add', { path, name: 'acl' }), { name: 'acl' }, 'the named entry grants read and write');
});

t.test('an ACL whose mask is empty is passed over, as the kernel does: the mode bits decide', { skip: notRoot || spawnSync('setfacl', ['--version']).status !== 0 ? 'needs root and setfacl' : false }, async (t) => {
  const f = await fixture(t);
  const dir = f.dir('acl', ROOT, 0o701);
  for (const spec of [`u:${USER.uid}:r--`, 'm::---']) {
    const r = spawnSync('setfacl', ['-m', spec, dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
  }
  t.equal(statSync(dir).mode & 0o777, 0o701, 'the mask is the mode\'s group bits');
  const path = f.image('acl/x.raw', USER, 0o600);
  t.match(await f.call<Disk>('disk.add', { path, name: 'x' }), { name: 'x' }, 'the others\' search bit lets the user reach its file');
});
