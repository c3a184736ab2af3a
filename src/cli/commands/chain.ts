import type { Command } from 'commander';
import type { ChainSummary } from '../../engine/types';
import { clientOptions, examples, withClient, type ClientFlags } from '../context';
import { chainTable } from '../views';

export function registerChain(program: Command): void {
  const chain = program.command('chain').description('snapshot chains per disk');
  clientOptions(chain.command('list').argument('[disk]', 'only this disk (id or name)'))
    .alias('ls')
    .description('per disk: snapshot count, logical bytes, and bytes stored for its chain')
    .addHelpText('after', examples(['blocksnap chain list', 'blocksnap chain list web1 --json']))
    .action(async (disk: string | undefined, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        out.result(await client.call<ChainSummary[]>('chain.list', disk === undefined ? {} : { disk }), chainTable);
      });
    });
}
