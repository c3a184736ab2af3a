/** The image roots a daemon is configured with (config.ts), and `/`, which is refused however named. */
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { resolveConfig } from '../../src/daemon/config';
import { resolveRoots } from '../../src/engine/paths';

t.test('with no root configured the working directory is the only root, and the config says it was defaulted', async (t) => {
  t.match(resolveConfig({}, '/srv/images'), { imageRoots: ['/srv/images'], imageRootsDefaulted: true });
});

t.test('with no root configured and / as the working directory, the daemon is refused, naming --image-root', async (t) => {
  t.throws(() => resolveConfig({}, '/'), { code: 'InvalidArgument', message: /^no --image-root given and the working directory is \/.*--image-root \(or imageRoots in the config file\)$/ });
});

t.test('a config file without imageRoots read in / is refused the same way', async (t) => {
  const file = join(t.testdir(), 'blocksnap.json');
  writeFileSync(file, JSON.stringify({ logLevel: 'warn' }));
  t.throws(() => resolveConfig({ config: file }, '/'), { code: 'InvalidArgument', message: /^no --image-root given and the working directory is \// });
});

t.test('/ given as a root is refused, on the command line or in the config file, among other roots or alone', async (t) => {
  t.throws(() => resolveConfig({ imageRoot: ['/srv/images', '/'] }, '/srv'), { code: 'InvalidArgument', message: /^image root \/ is refused/ });
  t.throws(() => resolveConfig({ imageRoot: ['/srv/../'] }, '/srv'), { code: 'InvalidArgument', message: /^image root \/ is refused/ });
  const file = join(t.testdir(), 'blocksnap.json');
  writeFileSync(file, JSON.stringify({ imageRoots: ['/'] }));
  t.throws(() => resolveConfig({ config: file }, '/srv'), { code: 'InvalidArgument', message: /^image root \/ is refused/ });
});

t.test('a root given in / is taken: only / itself is refused', async (t) => {
  t.match(resolveConfig({ imageRoot: ['srv/images'] }, '/'), { imageRoots: ['/srv/images'], imageRootsDefaulted: false });
});

t.test('a root that leads to / by a symbolic link is refused when the engine resolves it', async (t) => {
  const link = join(t.testdir(), 'everything');
  symlinkSync('/', link);
  t.throws(() => resolveRoots([link]), { code: 'InvalidArgument', message: `image root ${link} is the whole filesystem (/): name the directory that holds the images` });
});
