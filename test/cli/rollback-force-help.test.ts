/**
 * `rollback --force` overrides two refusals (DiskInUse): a QEMU process holding an image file,
 * and NBD clients of a copy-on-write disk's writable export, which it disconnects. Its help must
 * say both: an operator reading only the first would not expect the clients to be dropped.
 */
import t from 'tap';
import { buildProgram } from '../../src/cli/main';

function forceHelp(): string {
  const rollback = buildProgram().commands.find((c) => c.name() === 'rollback')!;
  const force = rollback.options.find((o) => o.long === '--force')!;
  return force.description;
}

t.test('rollback --force says it overrides a QEMU lock on an image file', async (t) => {
  t.match(forceHelp(), /QEMU process/);
});

t.test('rollback --force says it disconnects the NBD clients of a copy-on-write disk', async (t) => {
  t.match(forceHelp(), /copy-on-write disk/);
  t.match(forceHelp(), /disconnect.*NBD clients|NBD clients.*(dropped|disconnect)/);
});
