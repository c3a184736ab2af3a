import type { Command } from 'commander';
import { BlocksnapError, isErrorCode } from '../../errors';
import type { Group, GroupRollback } from '../../engine/groups';
import { validateManualSnapshotName } from '../../engine/names';
import { clientOptions, examples, withClient, type ClientFlags } from '../context';
import { EXIT } from '../exit-status';
import { groupDetails, groupRollbackView, groupTable } from '../model-views';

interface WaitFlags extends ClientFlags { wait: boolean }

export function registerGroup(program: Command): void {
  const group = program.command('group').description('snapshot groups: several disks of one VM snapshotted, rolled back and deleted together');

  clientOptions(group.command('create').argument('<disks...>', 'disk ids or names (all disks of the VM)'))
    .description('snapshot several disks together; all member snapshots start only when every disk is free')
    .option('--name <name>', 'group name, also the name of each member snapshot (default: group-<UTC time>)')
    .option('--description <text>', 'free text kept with the group and its snapshots')
    .option('--no-wait', 'print the group as started and return at once')
    .addHelpText('after', examples([
      'blocksnap group create web1-root web1-data --name before-upgrade',
      'blocksnap group create web1-root web1-data web1-logs --description "release 42" --json',
    ]) + '\nEither every member becomes available, or the group ends in status error and its\npartial members are removed. Fails with DiskBusy, starting nothing, if any disk is busy.\n')
    .action(async (disks: string[], flags: WaitFlags & { name?: string; description?: string }) => {
      if (flags.name !== undefined) validateManualSnapshotName(flags.name, 'group');
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { disks, wait: flags.wait };
        if (flags.name !== undefined) params.name = flags.name;
        if (flags.description !== undefined) params.description = flags.description;
        const g = await client.call<Group>('group.create', params);
        if (g.status === 'error' && g.error) {
          throw new BlocksnapError(isErrorCode(g.error.code) ? g.error.code : 'Internal', `group ${g.name} (${g.id}) failed: ${g.error.message}`, { groupId: g.id });
        }
        out.result(g, (v) => `${v.status === 'available' ? 'Created' : 'Started'} group ${v.name} (${v.id}).\n${groupDetails(v)}`);
      });
    });

  clientOptions(group.command('list'))
    .alias('ls')
    .description('list snapshot groups')
    .addHelpText('after', examples(['blocksnap group list', 'blocksnap group list --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Group[]>('group.list', {}), groupTable));
    });

  clientOptions(group.command('show').argument('<group>', 'group id or name'))
    .description('show a group and its member snapshots')
    .addHelpText('after', examples(['blocksnap group show before-upgrade', 'blocksnap group show g-0123456789abcdef --json']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Group>('group.show', { group: ref }), groupDetails));
    });

  clientOptions(group.command('rollback').argument('<group>', 'group id or name'))
    .description('roll every member disk back to its member snapshot (stop the VM first)')
    .option('--no-wait', 'print the started rollback jobs and return at once')
    .option('--force', 'roll back even while a QEMU process holds an image')
    .addHelpText('after', examples(['blocksnap group rollback before-upgrade', 'blocksnap group rollback before-upgrade --json']) +
      '\nRefuses, starting nothing, unless every disk passes the rollback checks (free, image in\nplace, not open in QEMU, member available). Exits 1 when any member rollback failed.\n')
    .action(async (ref: string, flags: WaitFlags & { force?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const r = await client.call<GroupRollback>('group.rollback', { group: ref, wait: flags.wait, ...(flags.force ? { force: true } : {}) });
        out.result(r, groupRollbackView);
        if (flags.wait && r.jobs.some((j) => j.state !== 'succeeded')) process.exitCode = EXIT.failed;
      });
    });

  clientOptions(group.command('delete').argument('<group>', 'group id or name'))
    .alias('rm')
    .description('delete a group and all its member snapshots')
    .addHelpText('after', examples(['blocksnap group delete before-upgrade']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        out.result(await client.call<Group>('group.delete', { group: ref }), (g) => `Deleted group ${g.name} (${g.id}) and its ${g.snapshotIds.length} snapshot(s).`);
      });
    });
}
