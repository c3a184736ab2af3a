import type { Command } from 'commander';
import { PACKAGE_VERSION, buildId } from '../../daemon/build-info';
import { PROTOCOL_VERSION } from '../../daemon/protocol/messages';
import { clientOptions, examples, withClient, type ClientFlags } from '../context';
import { details } from '../format';

interface DaemonVersion {
  version: string;
  /** Absent from daemons older than the field. */
  build?: string;
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
    .description('versions and builds of this client and of the daemon it talks to; a daemon still running another build (an upgrade not yet restarted) is named')
    .addHelpText('after', examples(['blocksnap version', 'blocksnap version --json']))
    .action(async (flags: ClientFlags) => {
      const client = { version: PACKAGE_VERSION, build: buildId(), protocol: PROTOCOL_VERSION, node: process.version };
      // Printed before connecting, so it shows even when no daemon answers; aligned with the
      // daemon's lines that follow.
      if (flags.json !== true) process.stdout.write(`${'client:'.padEnd('image roots:'.length)} blocksnap ${client.version} (build ${client.build}, protocol ${client.protocol}, node ${client.node})\n`);
      await withClient(flags, async (c, out) => {
        const daemon = await c.call<DaemonVersion>('version');
        out.result({ client, daemon }, ({ daemon: d }) => details([
          ['daemon', `blocksnap ${d.version} (${d.build !== undefined ? `build ${d.build}, ` : ''}protocol ${d.protocol}, node ${d.node}, pid ${d.pid})`],
          ...(d.build !== client.build ? [['note', otherBuild(d)] as [string, string]] : []),
          ['started', d.startedAt],
          ['data dir', d.dataDir],
          ['image roots', d.imageRoots.join(', ')],
          ...(d.nbdSocket !== undefined ? [['nbd socket', d.nbdSocket ?? 'none (started without --nbd-socket)'] as [string, string]] : []),
        ]));
      });
    });
}

/**
 * A daemon keeps running the code it was started with: after an upgrade it is the old build until
 * restarted, which is what this line is there to show.
 */
function otherBuild(d: DaemonVersion): string {
  const which = d.build === undefined ? 'an older build, from before builds were told apart' : `another build than this client (${d.build})`;
  return `the daemon runs ${which}; restart it to run this client's code`;
}
