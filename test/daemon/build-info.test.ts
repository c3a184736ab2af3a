/** The build id: the same for the same code, another for any change of a module or of the addon. */
import t, { type Test } from 'tap';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildId, buildIdOf } from '../../src/daemon/build-info';

/** A code tree like the one this test runs from (.ts modules: tap runs the sources). */
function tree(t: Test): { root: string; addon: string } {
  const dir = t.testdir({ code: { cli: { 'main.ts': 'export {};\n' }, 'index.ts': 'export const a = 1;\n', 'index.d.ts': 'declared\n' }, 'addon.node': 'native' });
  return { root: join(dir, 'code'), addon: join(dir, 'addon.node') };
}

t.test('the same tree gives the same id, 12 hex digits', async (t) => {
  const { root, addon } = tree(t);
  const id = buildIdOf(root, addon);
  t.match(id, /^[0-9a-f]{12}$/);
  t.equal(buildIdOf(root, addon), id);
});

t.test('a changed module gives another id', async (t) => {
  const { root, addon } = tree(t);
  const before = buildIdOf(root, addon);
  appendFileSync(join(root, 'cli', 'main.ts'), '// changed\n');
  t.not(buildIdOf(root, addon), before);
});

t.test('a new module gives another id', async (t) => {
  const { root, addon } = tree(t);
  const before = buildIdOf(root, addon);
  mkdirSync(join(root, 'extra'));
  writeFileSync(join(root, 'extra', 'new.ts'), 'export {};\n');
  t.not(buildIdOf(root, addon), before);
});

t.test('a rebuilt addon gives another id', async (t) => {
  const { root, addon } = tree(t);
  const before = buildIdOf(root, addon);
  writeFileSync(addon, 'native, rebuilt');
  t.not(buildIdOf(root, addon), before);
});

t.test('declaration files and other files are not code: they leave the id alone', async (t) => {
  const { root, addon } = tree(t);
  const before = buildIdOf(root, addon);
  writeFileSync(join(root, 'index.d.ts'), 'changed declarations\n');
  writeFileSync(join(root, 'notes.md'), 'not code\n');
  t.equal(buildIdOf(root, addon), before);
});

t.test('a tree that cannot be read has the id "unknown"', async (t) => {
  const { root } = tree(t);
  t.equal(buildIdOf(root, join(root, 'no-such-addon.node')), 'unknown');
  t.equal(buildIdOf(join(root, 'no-such-dir'), join(root, 'index.ts')), 'unknown');
});

t.test('the running build has an id', async (t) => {
  t.match(buildId(), /^[0-9a-f]{12}$/);
  t.equal(buildId(), buildId(), 'computed once');
});
