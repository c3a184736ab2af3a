import type { Command } from 'commander';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { rollbackView } from '../views';

export function registerRollback(program: Command): void {
  jobOptions(program.command('rollback').argument('<disk>', 'disk id or name').argument('<snapshot>', 'snapshot id or name (of that disk)'))
    .description('restore a disk image to a snapshot in place (stop the VM first)')
    .addHelpText('after', examples([
      'blocksnap rollback web1 before-upgrade',
      'blocksnap rollback web1 s-0123456789abcdef --json',
    ]) + '\nOnly blocks that differ from the snapshot are written. An interrupted rollback is\nreported by `disk show`; run the same rollback again to finish it.\n')
    .action(async (disk: string, snapshot: string, flags: JobFlags) => {
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'rollback', { disk, snapshot }, `rollback ${disk}`);
        if (job !== null) out.result(job, rollbackView);
      });
    });
}
