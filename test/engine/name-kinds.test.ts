/**
 * A refused name is named as the kind of name it is: a group's name is checked as its member
 * snapshots' names are (no id form, no "auto" prefix), but the message says it is a group name,
 * the one the user gave, whether the engine or the CLI refuses it.
 */
import t from 'tap';
import { validateManualSnapshotName, validateName } from '../../src/engine/names';
import { openSmallEngine, smallDisk } from '../helpers/model';
import { ensureBuilt, runCli } from '../integration/fixtures/harness';

const ID_SHAPED = ['d-0123456789abcdef', 's-0123456789abcdef', 'p-0123456789abcdef', 'g-0123456789abcdef', 'j-0123456789abcdef'];

t.test('every kind of name says which kind it is when refused', async (t) => {
  for (const kind of ['disk', 'snapshot', 'policy', 'group'] as const) {
    for (const name of ID_SHAPED) {
      t.throws(() => validateName(kind, name), { code: 'InvalidName', message: `invalid ${kind} name "${name}": it has the form of an id` }, `${kind} ${name}`);
    }
    t.throws(() => validateName(kind, 'a b'), { code: 'InvalidName', message: new RegExp(`^invalid ${kind} name "a b"`) });
  }
  for (const kind of ['snapshot', 'group'] as const) {
    t.throws(() => validateManualSnapshotName('g-0123456789abcdef', kind), { code: 'InvalidName', message: `invalid ${kind} name "g-0123456789abcdef": it has the form of an id` });
    t.throws(() => validateManualSnapshotName('auto-x', kind), { code: 'InvalidName', message: new RegExp(`^invalid ${kind} name "auto-x": names starting with "auto" are reserved`) });
    t.throws(() => validateManualSnapshotName('', kind), { code: 'InvalidName', message: new RegExp(`^invalid ${kind} name ""`) });
  }
  t.equal(validateManualSnapshotName('before-upgrade', 'group'), 'before-upgrade');
});

t.test('group create refuses a malformed group name as a group name, starting nothing', async (t) => {
  const f = await openSmallEngine(t);
  await smallDisk(f, 'root', 2);
  for (const [name, why] of [['g-0123456789abcdef', /it has the form of an id/], ['auto-nightly', /names starting with "auto" are reserved for automatic snapshots/], ['a b', /use 1-128 characters/]] as const) {
    t.throws(() => f.engine.groups.create({ disks: ['root'], name }), { code: 'InvalidName', message: new RegExp(`^invalid group name "${name}": ${why.source}`) }, name);
  }
  t.same(f.engine.groups.list(), [], 'no group was made');
  t.same(f.engine.listSnapshots('root'), [], 'no member snapshot was started');
});

t.test('the CLI names a group name a group name, before connecting', async (t) => {
  ensureBuilt();
  const r = await runCli(['group', 'create', 'c', '--name', 'g-0123456789abcdef', '--socket', '/nonexistent/blocksnap.sock', '--json']);
  t.equal(r.code, 2);
  t.match(r.json(), { error: { code: 'InvalidName', message: 'invalid group name "g-0123456789abcdef": it has the form of an id' } });
  const human = await runCli(['group', 'create', 'c', '--name', 'auto-x', '--socket', '/nonexistent/blocksnap.sock']);
  t.equal(human.code, 2);
  t.match(human.stderr, /^blocksnap: invalid group name "auto-x": names starting with "auto" are reserved/);
});
