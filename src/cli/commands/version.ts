import type { Command } from 'commander';
import { PACKAGE_VERSION } from '../../daemon/build-info';
import { PROTOCOL_VERSION } from '../../daemon/protocol/messages';
import { clientOptions, examples, withClient, type ClientFlags } from '../context';
import { details } from '../format';

interface DaemonVersion {
  version: string;
  protocol: number;
  node: string;
  pid: number;
  startedAt: string;
  dataDir: string;
  imageRoots: string[];
  /** Absent from daemons older than the field. */
  nbdSocket?: string | null;
}

export function registerVersion(program: Command): void {
  clientOptions(program.command('version'))
    .description('versions of this client and of the daemon it talks to')
    .addHelpText('after', examples(['blocksnap version', 'blocksnap version --json']))
    .action(async (flags: ClientFlags) => {
      const client = { version: PACKAGE_VERSION, protocol: PROTOCOL_VERSION, node: process.version };
      // Printed before connecting, so it shows even when no daemon answers; aligned with the
      // daemon's lines that follow.
      if (flags.json !== true) process.stdout.write(`${'client:'.padEnd('image roots:'.length)} blocksnap ${client.version} (protocol ${client.protocol}, node ${client.node})\n`);
      await withClient(flags, async (c, out) => {
        const daemon = await c.call<DaemonVersion>('version');
        out.result({ client, daemon }, ({ daemon: d }) => details([
          ['daemon', `blocksnap ${d.version} (protocol ${d.protocol}, node ${d.node}, pid ${d.pid})`],
          ['started', d.startedAt],
          ['data dir', d.dataDir],
          ['image roots', d.imageRoots.join(', ')],
          ...(d.nbdSocket !== undefined ? [['nbd socket', d.nbdSocket ?? 'none (started without --nbd-socket)'] as [string, string]] : []),
        ]));
      });
    });
}
