import type { Command } from 'commander';
import type { Snapshot } from '../../engine/types';
import { validateManualSnapshotName } from '../../engine/names';
import { clientOptions, examples, jobOptions, runJob, withClient, type ClientFlags, type JobFlags } from '../context';
import { snapshotDetails, snapshotTable } from '../views';
import { collect, parseTags } from '../arguments';

export function registerSnapshot(program: Command): void {
  const snapshot = program.command('snapshot').description('create, list and delete snapshots');

  jobOptions(snapshot.command('create').argument('<disk>', 'disk id or name'))
    .description('take an incremental point-in-time snapshot of a disk')
    .option('--name <name>', 'snapshot name: 1-128 of A-Z a-z 0-9 . _ -, not starting with "auto" (default: snap-<UTC time>)')
    .option('--description <text>', 'free text kept with the snapshot (at most 1024 characters, no control characters)')
    .addHelpText('after', examples([
      'blocksnap snapshot create web1 --name before-upgrade',
      'blocksnap snapshot create web1 --description "nightly" --json',
      'blocksnap snapshot create web1 --no-wait',
    ]))
    .action(async (disk: string, flags: JobFlags & { name?: string; description?: string }) => {
      if (flags.name !== undefined) validateManualSnapshotName(flags.name);
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { disk };
        if (flags.name !== undefined) params.name = flags.name;
        if (flags.description !== undefined) params.description = flags.description;
        const job = await runJob(client, out, flags, 'snapshot.create', params, `snapshot ${disk}`);
        if (job === null) return;
        // The committed record, not the job's copy: it is what `snapshot show` will report.
        const snap = await client.call<Snapshot>('snapshot.show', { snapshot: job.snapshotId });
        out.result(snap, (s) => `Created snapshot ${s.name} (${s.id}).\n${snapshotDetails(s)}`);
      });
    });

  clientOptions(snapshot.command('list').argument('[disk]', 'only this disk (id or name)'))
    .alias('ls')
    .description('list snapshots, oldest first')
    .option('--tag <key=value>', 'only snapshots with this tag; repeatable with different keys (all must match)', collect)
    .addHelpText('after', examples(['blocksnap snapshot list', 'blocksnap snapshot list web1 --json', 'blocksnap snapshot list --tag env=prod --tag keep=yes']))
    .action(async (disk: string | undefined, flags: ClientFlags & { tag?: string[] }) => {
      const params: Record<string, unknown> = {};
      if (disk !== undefined) params.disk = disk;
      if (flags.tag !== undefined) params.tags = parseTags(flags.tag);
      await withClient(flags, async (client, out) => {
        out.result(await client.call<Snapshot[]>('snapshot.list', params), snapshotTable);
      });
    });

  clientOptions(snapshot.command('tag').argument('<snapshot>', 'snapshot id or name').argument('<tags...>', 'key=value pairs'))
    .description('set tags on a snapshot (an existing key takes the new value)')
    .addHelpText('after', examples(['blocksnap snapshot tag before-upgrade env=prod ticket=OPS-1234']))
    .action(async (ref: string, pairs: string[], flags: ClientFlags) => {
      const tags = parseTags(pairs);
      await withClient(flags, async (client, out) => {
        out.result(await client.call<Snapshot>('snapshot.tag', { snapshot: ref, tags }), snapshotDetails);
      });
    });

  clientOptions(snapshot.command('untag').argument('<snapshot>', 'snapshot id or name').argument('<keys...>', 'tag keys to remove'))
    .description('remove tags from a snapshot by key')
    .addHelpText('after', examples(['blocksnap snapshot untag before-upgrade ticket']))
    .action(async (ref: string, keys: string[], flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        out.result(await client.call<Snapshot>('snapshot.untag', { snapshot: ref, keys }), snapshotDetails);
      });
    });

  clientOptions(snapshot.command('show').argument('<snapshot>', 'snapshot id or name'))
    .description('show one snapshot')
    .addHelpText('after', examples(['blocksnap snapshot show before-upgrade', 'blocksnap snapshot show s-0123456789abcdef --json']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Snapshot>('snapshot.show', { snapshot: ref }), snapshotDetails));
    });

  clientOptions(snapshot.command('delete').argument('<snapshot>', 'snapshot id or name'))
    .alias('rm')
    .description('delete a snapshot; blocks no other snapshot uses are freed')
    .addHelpText('after', examples(['blocksnap snapshot delete before-upgrade', 'blocksnap snapshot delete s-0123456789abcdef --json']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        const s = await client.call<Snapshot>('snapshot.delete', { snapshot: ref });
        out.result(s, (v) => `Deleted snapshot ${v.name} (${v.id}).`);
      });
    });
}
