/**
 * Digest lists as large as a view (32 bytes per block: 512 MiB for a 64 TiB image) are lent to
 * native jobs, not copied on the JS thread when the job starts. Shown by holding every libuv pool
 * thread so that a job is queued but cannot run, changing the Buffer, then letting it run: it
 * reads what the Buffer holds when it runs. (Callers never change a lent Buffer; this is only how
 * a test can tell a lend from a copy.)
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readdirSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { applyImage, scanImage, verifyBlocks } from '../../src/native/index';
import { BS, makeImage, makeStore, noise } from './fixtures/images';

/** Blocks every pool thread in an open(2) of a FIFO; the returned function lets them all go. */
async function holdPool(dir: string): Promise<() => Promise<void>> {
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifos = Array.from({ length: threads }, (_, i) => join(dir, `hold-${i}`));
  for (const f of fifos) execFileSync('mkfifo', [f]);
  const readers = fifos.map((f) => open(f, 'r'));
  // Held once that many threads wait in a FIFO's open for a writer (by then surely, where /proc
  // does not tell).
  const deadline = Date.now() + 5000;
  while (waitingForWriter() < threads && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  return async () => {
    for (const f of fifos) {
      for (;;) {
        try {
          closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK));
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 10)); // that reader has not reached its open yet
        }
      }
    }
    for (const r of await Promise.all(readers)) await r.close();
  };
}

function waitingForWriter(): number {
  let n = 0;
  for (const task of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${task}/wchan`, 'utf8') === 'wait_for_partner') n++;
    } catch {
      // a thread that ended meanwhile
    }
  }
  return n;
}

t.test('verifyBlocks reads the digests Buffer it was given when it runs, not a copy made when it was called', async (t) => {
  const dir = t.testdir();
  const store = makeStore(dir);
  const digests = Buffer.alloc(32, 0xaa);
  const release = await holdPool(dir);
  const job = verifyBlocks({ storeDir: store, digests, threads: 1 });
  digests.fill(0xbb);
  await release();
  const r = await job;
  t.match(r.problems, [{ digest: 'bb'.repeat(32), reason: 'missing' }]);
});

t.test('applyImage reads the digests Buffer it was given when it runs', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  const content = noise(2 * BS);
  makeImage(img, 2 * BS, [[0, content]]);
  const store = makeStore(dir);
  const scan = await scanImage({ imagePath: img, storeDir: store, blockSize: BS });
  const digests = Buffer.from(scan.digests);
  const release = await holdPool(dir);
  const copy = join(dir, 'copy');
  const job = applyImage({ imagePath: copy, storeDir: store, blockSize: BS, sizeBytes: 2 * BS, digests, mode: 'create' });
  digests.fill(0, 0, 32); // block 0 becomes ZERO
  await release();
  t.match(await job, { blocksWritten: 1 });
  t.ok(readFileSync(copy).equals(Buffer.concat([Buffer.alloc(BS), content.subarray(BS)])), 'block 0 as the Buffer held it when the job ran');
});
