import { Option, type Command } from 'commander';
import { BlocksnapError } from '../../errors';
import type { PolicyRunResult } from '../../engine/policies';
import { validateTimeZone } from '../../engine/time-zone';
import { KEEP_MAX, RETENTION_DAYS_MAX } from '../../engine/retention';
import { POLICY_NAME_MAX, validateName } from '../../engine/names';
import { integerOption, parseIntegerList } from '../arguments';
import { clientOptions, detachOption, examples, withClient, type ClientFlags } from '../context';
import { followCall, InterruptedWait } from '../follow';
import { EXIT } from '../exit-status';
import { policyDetails, policyRunView, policyTable, type ServedPolicy } from '../model-views';

interface PolicyFlags extends ClientFlags {
  name?: string;
  description?: string;
  hours?: number[];
  weekdays?: number[];
  timeZone?: string;
  retentionDays?: number;
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  enable?: boolean;
  disable?: boolean;
  /** false: --no-replicate-to (update). */
  replicateTo?: string | false;
}

const KEEP_FLAGS = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const;

/**
 * Schedule and retention options shared by create and update; `creating` shows the defaults a
 * new policy gets (update keeps what it is not given).
 */
function policyOptions(cmd: Command, creating: boolean): Command {
  const byDefault = (text: string): string => (creating ? ` (default: ${text})` : '');
  return clientOptions(cmd)
    .option('--description <text>', 'free text kept with the policy (at most 1024 characters, no control characters)')
    .option('--hours <list>', 'hours of the day to run at, 0-23 (e.g. 2,14 or 0-23)', (v) => parseIntegerList(v, 0, 23))
    .option('--weekdays <list>', `ISO weekdays to run on, 1 Monday - 7 Sunday${byDefault('1-7')}`, (v) => parseIntegerList(v, 1, 7))
    .option('--time-zone <zone>', `IANA time zone the hours and retention periods are in${byDefault('UTC')}`)
    .option('--retention-days <days>', 'delete automatic snapshots older than this; -1 keeps them forever (the quota still applies)', integerOption(-1, RETENTION_DAYS_MAX))
    .option('--keep-last <n>', 'keep the n newest automatic snapshots', integerOption(0, KEEP_MAX))
    .option('--keep-hourly <n>', 'keep the newest snapshot of each of the n newest hours', integerOption(0, KEEP_MAX))
    .option('--keep-daily <n>', 'keep the newest snapshot of each of the n newest days', integerOption(0, KEEP_MAX))
    .option('--keep-weekly <n>', 'keep the newest snapshot of each of the n newest ISO weeks', integerOption(0, KEEP_MAX))
    .option('--keep-monthly <n>', 'keep the newest snapshot of each of the n newest months', integerOption(0, KEEP_MAX))
    .option('--keep-yearly <n>', 'keep the newest snapshot of each of the n newest years', integerOption(0, KEEP_MAX))
    .option('--replicate-to <remote>', 'after each run, replicate the disk\'s automatic snapshots to this remote (a job)');
}

function policyParams(f: PolicyFlags): Record<string, unknown> {
  if (f.timeZone !== undefined) validateTimeZone(f.timeZone);
  if (f.name !== undefined) validateName('policy', f.name, POLICY_NAME_MAX);
  const p: Record<string, unknown> = {};
  for (const k of ['name', 'description', 'hours', 'weekdays', 'timeZone', 'retentionDays', ...KEEP_FLAGS] as const) {
    if (f[k] !== undefined) p[k] = f[k];
  }
  if (f.replicateTo !== undefined) p.replicateTo = f.replicateTo === false ? '' : f.replicateTo;
  return p;
}

const RETENTION_HELP = `
Retention applies to the disk's automatic snapshots only, after each run; manual snapshots and
group members are never expired by a policy. Give it in days (as the cloud services do) or as
keep rules (as Proxmox Backup Server and restic do), not both. Without either, automatic
snapshots are kept until the daemon's per-disk automatic-snapshot quota (default 256) makes room
by deleting the oldest.
`;

const UPDATE_HELP = `
Options not given keep their value, except retention: --retention-days or any --keep-* option
replaces the whole old retention (days or keep rules alike), so give every keep rule you want to
keep. Changing --hours, --weekdays, --time-zone or --enable/--disable starts the schedule fresh
(no catch-up for due times before the change); other changes leave a pending run alone.
--enable with --disable, or --replicate-to with --no-replicate-to, is refused (InvalidArgument).
`;

const LEFT_SNAPSHOTS_HELP = `
The automatic snapshots stay: they are not deleted, and no policy expires them while none is
bound to the disk. They are still the disk's automatic snapshots, though: a policy bound to the
disk later applies its retention (and the automatic quota its evictions) to all of them, not only
to those it made itself.
`;

const REPLICATE_HELP = `
With --replicate-to, each successful run on a disk then starts a replication job of the disk's
automatic snapshots to the remote (the new one, and any an earlier failed replication left). Its
outcome shows in the run's history entry; a failure is retried by the next run. The remote must
exist (blocksnap remote add).
`;

export function registerPolicy(program: Command): void {
  const policy = program.command('policy').description('automatic snapshot policies: schedule, retention, disks');

  policyOptions(policy.command('create'), true)
    .description('create an automatic snapshot policy')
    .requiredOption('--name <name>', 'policy name: 1-100 of A-Z a-z 0-9 . _ -')
    .addOption(new Option('--disabled', 'create it disabled (the scheduler skips it until `policy update --enable`)'))
    .addHelpText('after', examples([
      'blocksnap policy create --name daily --hours 2 --retention-days 7',
      'blocksnap policy create --name office --hours 8,12,18 --weekdays 1-5 --time-zone Europe/Berlin --keep-daily 7 --keep-weekly 4',
      'blocksnap policy create --name hourly --hours 0-23 --keep-last 24 --keep-daily 30 --json',
      'blocksnap policy create --name nightly --hours 1 --keep-daily 14 --replicate-to offsite',
    ]) + RETENTION_HELP + REPLICATE_HELP)
    .action(async (flags: PolicyFlags & { disabled?: boolean }) => {
      if (flags.hours === undefined) throw new BlocksnapError('InvalidArgument', "required option '--hours <list>' not specified");
      const params = policyParams(flags);
      if (flags.disabled) params.enabled = false;
      await withClient(flags, async (client, out) => {
        out.result(await client.call<ServedPolicy>('policy.create', params), (p) => `Created policy ${p.name} (${p.id}).\n${policyDetails(p)}`);
      });
    });

  clientOptions(policy.command('list'))
    .alias('ls')
    .description('list policies')
    .addHelpText('after', examples(['blocksnap policy list', 'blocksnap policy list --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<ServedPolicy[]>('policy.list', {}), policyTable));
    });

  clientOptions(policy.command('show').argument('<policy>', 'policy id or name'))
    .description('show a policy, its disks, next run and recent runs')
    .addHelpText('after', examples(['blocksnap policy show daily', 'blocksnap policy show p-0123456789abcdef --json']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<ServedPolicy>('policy.show', { policy: ref }), policyDetails));
    });

  policyOptions(policy.command('update').argument('<policy>', 'policy id or name'), false)
    .description('change a policy; options not given keep their value, but any retention option replaces the whole retention')
    .option('--name <name>', 'new name')
    .option('--enable', 'let the scheduler run it')
    .option('--disable', 'stop the scheduler from running it (policy run still works)')
    .option('--no-replicate-to', 'stop replicating after runs')
    .addHelpText('after', examples([
      'blocksnap policy update daily --hours 3',
      'blocksnap policy update daily --keep-daily 14 --keep-monthly 6',
      'blocksnap policy update daily --disable',
      'blocksnap policy update daily --replicate-to offsite',
    ]) + UPDATE_HELP + RETENTION_HELP + REPLICATE_HELP)
    .action(async (ref: string, flags: PolicyFlags) => {
      const params: Record<string, unknown> = { policy: ref, ...policyParams(flags) };
      if (flags.enable) params.enabled = true;
      else if (flags.disable) params.enabled = false;
      await withClient(flags, async (client, out) => {
        out.result(await client.call<ServedPolicy>('policy.update', params), (p) => `Updated policy ${p.name} (${p.id}).\n${policyDetails(p)}`);
      });
    });

  clientOptions(policy.command('delete').argument('<policy>', 'policy id or name'))
    .alias('rm')
    .description('delete a policy; its disks are unbound and the automatic snapshots it made stay')
    .addHelpText('after', examples(['blocksnap policy delete daily']) + LEFT_SNAPSHOTS_HELP)
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        out.result(await client.call<ServedPolicy>('policy.delete', { policy: ref }), (p) => `Deleted policy ${p.name} (${p.id}).`);
      });
    });

  clientOptions(policy.command('bind').argument('<policy>', 'policy id or name').argument('<disks...>', 'disk ids or names'))
    .description('apply a policy to disks (a disk has at most one policy)')
    .addHelpText('after', examples(['blocksnap policy bind daily web1 db1']))
    .action(async (ref: string, disks: string[], flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        out.result(await client.call<ServedPolicy>('policy.bind', { policy: ref, disks }), (p) => `Policy ${p.name} now runs on ${p.diskIds.length} disk(s).`);
      });
    });

  clientOptions(policy.command('unbind').argument('<policy>', 'policy id or name').argument('<disks...>', 'disk ids or names'))
    .description('stop applying a policy to disks (their automatic snapshots stay)')
    .addHelpText('after', examples(['blocksnap policy unbind daily web1']) + LEFT_SNAPSHOTS_HELP)
    .action(async (ref: string, disks: string[], flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        out.result(await client.call<ServedPolicy>('policy.unbind', { policy: ref, disks }), (p) => `Policy ${p.name} now runs on ${p.diskIds.length} disk(s).`);
      });
    });

  detachOption(clientOptions(policy.command('run').argument('<policy>', 'policy id or name')), 'the snapshot jobs')
    .description('run a policy now: snapshot every bound disk, then apply retention; waits until done')
    .addHelpText('after', examples(['blocksnap policy run daily', 'blocksnap policy run daily --json']) +
      '\nA busy disk is reported (DiskBusy) rather than waited for. Exits 1 when any disk failed.\n' +
      '\nCtrl-C asks, on a terminal, whether to cancel the run\'s snapshots, detach (leave them running)\n' +
      'or keep waiting; without a terminal it cancels them, unless --detach-on-interrupt is given.\n' +
      'A cancelled snapshot is removed and its disk\'s run recorded as failed (Cancelled); retention\n' +
      'runs only after a snapshot that completed. Either way it exits 130 (SIGTERM, SIGHUP: see\n' +
      'blocksnap --help).\n')
    .action(async (ref: string, flags: ClientFlags & { detachOnInterrupt?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const f = await followCall<PolicyRunResult>(client, 'policy.run', { policy: ref }, {
          label: `policy run ${ref}`, detachOnInterrupt: flags.detachOnInterrupt === true,
        });
        const r = f.result;
        const cancelled = r.disks.filter((d) => d.error?.code === 'Cancelled');
        if (f.cancelRequested && cancelled.length > 0) {
          throw new InterruptedWait(f.jobs, true, `policy run ${ref} was cancelled (jobs ${f.jobs.map((j) => j.id).join(', ')}):\n${policyRunView(r)}`, f.signal);
        }
        out.result(r, policyRunView);
        if (r.disks.some((d) => d.outcome !== 'created')) process.exitCode = EXIT.failed;
      });
    });
}
