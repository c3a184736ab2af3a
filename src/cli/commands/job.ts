import type { Command } from 'commander';
import { JOB_KINDS, type Job } from '../../engine/types';
import { clientOptions, examples, withClient, type ClientFlags } from '../context';
import { followJob } from '../follow';
import { jobDetails, jobTable } from '../views';

export function registerJob(program: Command): void {
  const job = program.command('job').description(`running and recent jobs (${JOB_KINDS.join(', ')})`);

  clientOptions(job.command('list'))
    .alias('ls')
    .description('list running and recent jobs')
    .addHelpText('after', examples(['blocksnap job list', 'blocksnap job list --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Job[]>('job.list'), jobTable));
    });

  clientOptions(job.command('show').argument('<job>', 'job id'))
    .description('show one job')
    .addHelpText('after', examples(['blocksnap job show j-0123456789abcdef --json']))
    .action(async (id: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Job>('job.show', { job: id }), jobDetails));
    });

  clientOptions(job.command('cancel').argument('<job>', 'job id'))
    .description('ask a running job to stop at its next safe point')
    .addHelpText('after', examples(['blocksnap job cancel j-0123456789abcdef']))
    .action(async (id: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        const j = await client.call<Job>('job.cancel', { job: id });
        out.result(j, (v) => (v.state === 'running' ? `Cancelling job ${v.id}.` : `Job ${v.id} already ended: ${v.state}.`));
      });
    });

  clientOptions(job.command('wait').argument('<job>', 'job id'))
    .description('wait for a job to end, with a progress bar on a terminal')
    .option('--detach-on-interrupt', 'on Ctrl-C without a terminal, or SIGTERM, leave the job running instead of cancelling it')
    .addHelpText('after', examples(['blocksnap job wait j-0123456789abcdef', 'blocksnap job wait j-0123456789abcdef --json']) +
      '\nExits 0 when the job succeeded, 1 with its error otherwise.\n')
    .action(async (id: string, flags: ClientFlags & { detachOnInterrupt?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const started = await client.call<Job>('job.show', { job: id });
        const done = await followJob(client, started, { label: `${started.kind} ${id}`, detachOnInterrupt: flags.detachOnInterrupt === true });
        out.result(done, jobDetails);
      });
    });
}
