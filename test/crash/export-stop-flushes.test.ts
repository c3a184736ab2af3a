/**
 * `export stop` answers once the export's volume is closed, so writes its clients were answered
 * for but never flushed are durable by then: a SIGKILL right after the answer loses none.
 */
import t from 'tap';
import { ServedCowDisk, spreadWrites } from './served-cow-disk';

t.test('writes answered but never flushed survive a SIGKILL right after export stop answers', async (t) => {
  const disk = await ServedCowDisk.start(t);
  // None flushed or FUA.
  const writes = spreadWrites(24);
  const session = await disk.session();
  for (const w of writes) t.equal(await session.write(w.offset, w.data, false), 0, `write at ${w.offset} answered`);
  await disk.client.call('export.stop', { name: 'served' });
  session.close();
  await disk.killAndRestart();
  t.equal(await disk.lost(writes), 0, 'every answered write reads back after the restart');
});
