/**
 * A FLUSH makes every write answered before it durable: a SIGKILL of the daemon right after the
 * flush's reply loses none of them. Plain writes only, with no FUA and no snapshot, each of which
 * would make the writes durable on its own and so hide a flush that does nothing.
 */
import t from 'tap';
import { ServedCowDisk, spreadWrites } from './served-cow-disk';

t.test('writes answered before a FLUSH survive a SIGKILL right after its reply', async (t) => {
  const disk = await ServedCowDisk.start(t);
  const writes = spreadWrites(24);
  const session = await disk.session();
  for (const w of writes) t.equal(await session.write(w.offset, w.data, false), 0, `write at ${w.offset} answered`);
  t.equal(await session.flush(), 0, 'the flush answered');
  await disk.killAndRestart();
  session.close();
  t.equal(await disk.lost(writes), 0, 'every write answered before the flush reads back after the restart');
});
