import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { CloneResult, Disk } from '../../engine/types';
import { BlocksnapError } from '../../errors';
import { validateName } from '../../engine/names';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { cloneView, diskDetails } from '../views';

export function registerClone(program: Command): void {
  jobOptions(program.command('clone').argument('<snapshot>', 'snapshot id or name').argument('[path]', 'new image file (must not exist); not with --cow'))
    .description('write a snapshot out as a new image file, or make an instant copy-on-write disk of it (--cow)')
    .addOption(new Option('--format <format>', 'format of the new image').choices(['raw', 'qcow2']).default('raw'))
    .option('--cow', 'create a copy-on-write disk backed by the snapshot instead: instant, nothing is copied')
    .option('--name <name>', 'name of the copy-on-write disk (with --cow)')
    .addHelpText('after', examples([
      'blocksnap clone before-upgrade /var/lib/libvirt/images/web1-copy.img',
      'blocksnap clone s-0123456789abcdef ./restore.img --json',
      'blocksnap clone before-upgrade --cow --name web1-test',
    ]) + '\nThe image is written beside PATH without a name and takes the name PATH only once complete;\n' +
      'a daemon killed meanwhile leaves nothing (where the filesystem cannot write a file without a name,\n' +
      'it is written as .blocksnap-JOBID.partial, which the daemon removes when it starts again).\n' +
      'A copy-on-write disk is served with: blocksnap export start DISK --writable.\n' +
      'Its base snapshot cannot be deleted while it exists (SnapshotHasClones).\n')
    .action(async (snapshot: string, path: string | undefined, flags: JobFlags & { format: 'raw' | 'qcow2'; cow?: boolean; name?: string }, cmd: Command) => {
      // An option that would not act is refused rather than dropped: the user meant something by it.
      if (flags.cow === true) {
        if (path !== undefined || flags.name === undefined) {
          throw new BlocksnapError('InvalidArgument', 'clone --cow takes --name NAME and no path');
        }
        const unused = [
          cmd.getOptionValueSource('format') === 'cli' ? '--format' : null,
          flags.wait === false ? '--no-wait' : null,
          flags.detachOnInterrupt === true ? '--detach-on-interrupt' : null,
        ].filter((o) => o !== null);
        if (unused.length > 0) {
          throw new BlocksnapError('InvalidArgument', `clone --cow makes the disk at once and writes no image, so it takes no ${unused.join(', ')}`);
        }
        const name = validateName('disk', flags.name);
        await withClient(flags, async (client, out) => {
          const d = await client.call<Disk>('clone.cow', { snapshot, name });
          out.result(d, (v) => `Created copy-on-write disk ${v.name} (${v.id}).\n${diskDetails(v)}`);
        });
        return;
      }
      if (path === undefined) throw new BlocksnapError('InvalidArgument', 'clone needs a PATH (or --cow --name NAME)');
      if (flags.name !== undefined) {
        throw new BlocksnapError('InvalidArgument', 'clone --name names a copy-on-write disk and needs --cow; an image file is named by its PATH');
      }
      await withClient(flags, async (client, out) => {
        const target = resolve(path);
        const job = await runJob(client, out, flags, 'clone', { snapshot, path: target, format: flags.format }, `clone ${snapshot}`);
        if (job !== null) out.result(job.result as CloneResult, cloneView);
      });
    });
}
