/**
 * An engine in a child process that starts one rollback and is SIGKILLed by itself the moment
 * that rollback has committed: nothing after that commit runs, as when the daemon is killed there.
 * For a copy-on-write disk the first thing after its catalog transaction is the rebase of the open
 * volume; for an image file, the "rollback finished" log line.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' DATA_DIR IMAGE_ROOT DISK SNAPSHOT
 */
import { Engine, type EngineLogger } from '../../src/engine';
import { Volume } from '../../src/native/volume';

async function main(): Promise<void> {
  const [dataDir, imageRoot, disk, snapshot] = process.argv.slice(-4) as [string, string, string, string];
  const die = (): void => {
    process.kill(process.pid, 'SIGKILL');
  };
  const logger: EngineLogger = {
    debug() {}, warn() {}, error() {},
    info: (_obj: object, msg?: string) => { if (msg === 'rollback finished') die(); },
  };
  const engine = await Engine.open({ dataDir, imageRoots: [imageRoot], blockSize: 64 * 1024, logger });
  Volume.prototype.rebase = async () => die();
  await engine.waitJob(engine.startRollback(disk, snapshot).id);
  process.stderr.write('the rollback ended without being killed after its commit\n');
  process.exit(1);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
