import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { RestoreResult } from '../../engine/offsite-types';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { restoreView } from '../offsite-views';
import { parseConcurrency } from './numbers';

export function registerRestore(program: Command): void {
  jobOptions(program.command('restore')
    .argument('<remote>', 'remote name')
    .argument('<snapshot>', 'remote snapshot id or unique name (see: blocksnap remote snapshots REMOTE)')
    .argument('<path>', 'new image file (must not exist, inside an image root)'))
    .description('write a snapshot from a remote out as a new image file, on any host (no local snapshot needed)')
    .addOption(new Option('--format <format>', 'format of the new image').choices(['raw', 'qcow2']).default('raw'))
    .option('--concurrency <n>', 'downloads in flight (1-64, default 4)')
    .addHelpText('after', examples([
      'blocksnap restore offsite s-0123456789abcdef /var/lib/libvirt/images/web1-restored.img',
      'blocksnap restore offsite before-upgrade ./web1.img --json',
      'blocksnap restore offsite before-upgrade ./web1.qcow2 --format qcow2',
    ]) + '\nThe image is written beside PATH without a name and takes the name PATH only once complete.\n')
    .action(async (remote: string, snapshot: string, path: string, flags: JobFlags & { format: string; concurrency?: string }) => {
      const params: Record<string, unknown> = { remote, snapshot, path: resolve(path), format: flags.format };
      if (flags.concurrency !== undefined) params.concurrency = parseConcurrency(flags.concurrency);
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'restore', params, `restore ${snapshot}`);
        if (job !== null) out.result(job.result as RestoreResult, restoreView);
      });
    });
}
