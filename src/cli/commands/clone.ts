import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { CloneResult } from '../../engine/types';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { cloneView } from '../views';

export function registerClone(program: Command): void {
  jobOptions(program.command('clone').argument('<snapshot>', 'snapshot id or name').argument('<path>', 'new image file (must not exist)'))
    .description('write a snapshot out as a new image file')
    .addOption(new Option('--format <format>', 'format of the new image').choices(['raw', 'qcow2']).default('raw'))
    .addHelpText('after', examples([
      'blocksnap clone before-upgrade /var/lib/libvirt/images/web1-copy.img',
      'blocksnap clone s-0123456789abcdef ./restore.img --json',
    ]))
    .action(async (snapshot: string, path: string, flags: JobFlags & { format: 'raw' | 'qcow2' }) => {
      await withClient(flags, async (client, out) => {
        const target = resolve(path);
        const job = await runJob(client, out, flags, 'clone', { snapshot, path: target, format: flags.format }, `clone ${snapshot}`);
        if (job !== null) out.result(job.result as CloneResult, cloneView);
      });
    });
}
