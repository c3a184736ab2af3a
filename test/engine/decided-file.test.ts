/**
 * The file a client's rights were decided on (UserAccess.checkFile) is the only one a job opens for
 * that client: another file renamed over the path after the decision is refused (ImageReplaced)
 * before anything is read or written. The rename here comes between the decision and the open
 * deterministically; the racing version, with a real user's process, is
 * test/daemon/client-paths-swap.test.ts.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { applyImage, scanImage, type FileIdentity } from '../../src/native/index';
import { openCheckedFile } from '../../src/engine/paths';
import { UserAccess } from '../../src/engine/user-access';
import { BS, makeStore } from '../native/fixtures/images';

/** The test's own user: the files it makes are its own, so every right is granted. */
function me(): UserAccess {
  return new UserAccess({ uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!() });
}

/** `image.raw` decided on for the test's user, then `other.raw` renamed over it. */
function replacedAfterDecision(t: Test): { dir: string; image: string; id: FileIdentity } {
  const dir = t.testdir();
  const image = join(dir, 'image.raw');
  const other = join(dir, 'other.raw');
  writeFileSync(image, Buffer.alloc(2 * BS, 1));
  writeFileSync(other, Buffer.alloc(2 * BS, 2));
  const user = me();
  t.teardown(() => user.release());
  const id = user.checkFile(image, image, ['read', 'write']);
  renameSync(other, image);
  return { dir, image, id };
}

t.test('a scan refuses an image renamed over after its rights were decided', async (t) => {
  const { dir, image, id } = replacedAfterDecision(t);
  await t.rejects(scanImage({ imagePath: image, imageId: id, storeDir: makeStore(dir), blockSize: BS }), { code: 'ImageReplaced', details: { path: image } });
});

t.test('a rollback\'s apply refuses an image renamed over after its rights were decided, and writes nothing', async (t) => {
  const { dir, image, id } = replacedAfterDecision(t);
  const store = makeStore(dir);
  const source = join(dir, 'source.raw');
  writeFileSync(source, Buffer.alloc(2 * BS, 3));
  const scan = await scanImage({ imagePath: source, storeDir: store, blockSize: BS });
  await t.rejects(applyImage({ imagePath: image, imageId: id, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' }),
    { code: 'ImageReplaced', details: { imageUnchanged: true } });
  t.ok(readFileSync(image).equals(Buffer.alloc(2 * BS, 2)), 'the file renamed over it is as it was');
});

t.test('a file the daemon reads for a client is refused once another is renamed over it', async (t) => {
  const { image, id } = replacedAfterDecision(t);
  t.throws(() => openCheckedFile(image, image, id), { code: 'ImageReplaced' });
});

t.test('the file decided on is opened as before', async (t) => {
  const dir = t.testdir();
  const image = join(dir, 'image.raw');
  writeFileSync(image, Buffer.alloc(2 * BS, 1));
  const user = me();
  t.teardown(() => user.release());
  const id = user.checkFile(image, image, ['read', 'write']);
  const r = await scanImage({ imagePath: image, imageId: id, storeDir: makeStore(dir), blockSize: BS });
  t.equal(r.sizeBytes, 2 * BS);
});
