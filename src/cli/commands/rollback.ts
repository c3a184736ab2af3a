import type { Command } from 'commander';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { rollbackView } from '../views';

export function registerRollback(program: Command): void {
  jobOptions(program.command('rollback').argument('<disk>', 'disk id or name').argument('<snapshot>', 'snapshot id or name (of that disk)'))
    .description('restore a disk image to a snapshot in place (stop the VM first)')
    .option('--force', 'roll back even while a QEMU process (a running VM, qemu-nbd) holds the image')
    .addHelpText('after', examples([
      'blocksnap rollback web1 before-upgrade',
      'blocksnap rollback web1 s-0123456789abcdef --json',
    ]) + '\nOnly blocks that differ from the snapshot are written (a qcow2 disk is rewritten as a fresh\nimage beside it and renamed over it). An interrupted rollback is reported by `disk show`; run\nthe same rollback again to finish it. A rollback is refused (DiskInUse) while QEMU holds the\nimage open, unless --force is given.\n')
    .action(async (disk: string, snapshot: string, flags: JobFlags & { force?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { disk, snapshot };
        if (flags.force) params.force = true;
        const job = await runJob(client, out, flags, 'rollback', params, `rollback ${disk}`);
        if (job !== null) out.result(job, rollbackView);
      });
    });
}
