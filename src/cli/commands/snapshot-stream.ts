import { resolve } from 'node:path';
import type { Command } from 'commander';
import { BlocksnapError } from '../../errors';
import type { ExportResult, ImportResult } from '../../engine/offsite-types';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { InterruptedWait, reportInterrupted } from '../follow';
import { exportView, importView } from '../offsite-views';
import { createOutput, reportError } from '../output';
import { exportToStream, importFromStream } from '../stdio-streams';

/**
 * A stream file is read and written by the daemon itself, inside its image roots (it usually runs
 * as root and must not open files its socket users could not name). "-" is the client's own
 * stdin/stdout instead, carried through the socket (stdio-streams.ts).
 */
function streamPath(value: string): string | null {
  return value === '-' ? null : resolve(value);
}

function checkStdio(flags: JobFlags, option: '-o' | '-i'): void {
  if (!flags.wait) throw new BlocksnapError('InvalidArgument', `--no-wait cannot be used with ${option} -: the stream passes through this command`);
  // The stream ends with this command's connection, so a job left behind would only fail.
  if (flags.detachOnInterrupt === true) {
    throw new BlocksnapError('InvalidArgument', `--detach-on-interrupt cannot be used with ${option} -: the stream passes through this command, and ends with it`);
  }
  if ((option === '-o' ? process.stdout : process.stdin).isTTY) {
    throw new BlocksnapError('InvalidArgument', `${option} - needs ${option === '-o' ? 'stdout redirected to a file or a pipe' : 'stdin from a file or a pipe'}, not a terminal`);
  }
}

export function registerSnapshotStreams(program: Command): void {
  const snapshot = program.commands.find((c) => c.name() === 'snapshot');
  if (!snapshot) throw new Error('the snapshot command must be registered first');

  jobOptions(snapshot.command('export').argument('<snapshot>', 'snapshot id or name'))
    .description('write a snapshot as a stream file: its block map and the blocks BASE lacks (all blocks without --from)')
    .requiredOption('-o, --output <file>', 'new stream file inside an image root (must not exist; named only once complete), or - for stdout')
    .option('--from <base>', 'a snapshot of the same disk that the receiving host has: an incremental stream')
    .addHelpText('after', examples([
      'blocksnap snapshot export monday -o /var/lib/libvirt/images/web1-monday.bsnap',
      'blocksnap snapshot export tuesday --from monday -o /var/lib/libvirt/images/web1-tuesday.bsnap',
      'scp /var/lib/libvirt/images/web1-tuesday.bsnap host2:/var/lib/libvirt/images/',
      'blocksnap snapshot export tuesday --from monday -o - | ssh host2 blocksnap snapshot import -i - --disk web1',
    ]))
    .addHelpText('after', '\nWith -o -, stdout carries the stream; the result (and any error, --json too) goes to stderr.\n')
    .action(async (ref: string, flags: JobFlags & { output: string; from?: string }) => {
      const path = streamPath(flags.output);
      const params: Record<string, unknown> = { snapshot: ref };
      if (flags.from !== undefined) params.base = flags.from;
      if (path !== null) {
        await withClient(flags, async (client, out) => {
          const job = await runJob(client, out, flags, 'snapshot.export', { ...params, path }, `export ${ref}`);
          if (job !== null) out.result(job.result as ExportResult, exportView);
        });
        return;
      }
      const json = flags.json === true;
      try {
        checkStdio(flags, '-o');
        await withClient(flags, async (client) => {
          const job = await exportToStream(client, process.stdout, params, `export ${ref}`);
          createOutput(json, process.stderr).result(job.result as ExportResult, exportView);
        });
      } catch (err) {
        // stdout carries the stream: whatever ended it is reported on stderr.
        process.exitCode = err instanceof InterruptedWait ? reportInterrupted(err, json, process.stderr) : reportError(err, json, process.stderr);
      }
    });

  jobOptions(snapshot.command('import'))
    .description('recreate a snapshot from a stream file (same id and content), on top of its base, under a local disk; ' +
      'a stream of a snapshot that is here already (same id and block map, --disk its disk) mends it: its damaged or missing blocks are written again, nothing else changes')
    .requiredOption('-i, --input <file>', 'stream file inside an image root, or - for stdin')
    .requiredOption('--disk <disk>', 'local disk the snapshot joins (id or name)')
    .addHelpText('after', examples([
      'blocksnap snapshot import -i /var/lib/libvirt/images/web1-monday.bsnap --disk web1',
      'blocksnap snapshot import -i /var/lib/libvirt/images/web1-tuesday.bsnap --disk web1 --json',
      'ssh host1 blocksnap snapshot export tuesday --from monday -o - | blocksnap snapshot import -i - --disk web1',
    ]))
    .action(async (flags: JobFlags & { input: string; disk: string }) => {
      const path = streamPath(flags.input);
      if (path === null) checkStdio(flags, '-i');
      await withClient(flags, async (client, out) => {
        const job = path === null
          ? await importFromStream(client, process.stdin, { disk: flags.disk }, 'import from stdin')
          : await runJob(client, out, flags, 'snapshot.import', { path, disk: flags.disk }, `import ${flags.input}`);
        if (job !== null) out.result(job.result as ImportResult, importView);
      });
    });
}
