/**
 * Snapshot streams through the socket: `snapshot export -o -` writes the stream on the CLI's
 * stdout, `snapshot import -i -` reads it from stdin, with two daemons standing for two hosts.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BIN, type Daemon } from './fixtures/harness';
import { BLOCK, sha256File } from './fixtures/images';
import { twoHosts } from './fixtures/two-hosts';

interface Run { code: number; stdout: Buffer; stderr: string }

/** Runs the CLI with `input` on stdin; stdout kept as bytes. */
function runBytes(d: Daemon, args: string[], input?: Buffer): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: d.imageRoot, env: { ...process.env, BLOCKSNAP_SOCKET: d.socketPath } });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
    p.stdin.on('error', () => undefined);
    if (input) p.stdin.end(input); else p.stdin.end();
  });
}

/** A stream without its header's export time: the one field two exports of a snapshot may differ in. */
function withoutExportTime(stream: Buffer): { header: Record<string, unknown>; body: Buffer } {
  const len = stream.readUInt32LE(12);
  const header = JSON.parse(stream.subarray(16, 16 + len).toString()) as Record<string, unknown>;
  delete header.exportedAt;
  // After the header checksum, up to (not including) the final whole-stream checksum.
  return { header, body: stream.subarray(16 + len + 32, stream.length - 32) };
}

t.test('export -o - writes the same stream as the file form', async (t) => {
  const { a, ids } = await twoHosts(t);
  await a.json('snapshot', 'export', 'tuesday', '--from', 'monday', '-o', 'tue.bsnap');
  const file = readFileSync(join(a.imageRoot, 'tue.bsnap'));
  const piped = await runBytes(a, ['snapshot', 'export', 'tuesday', '--from', 'monday', '-o', '-', '--json']);
  t.equal(piped.code, 0, piped.stderr);
  t.equal(piped.stdout.length, file.length, 'same length');
  t.same(withoutExportTime(piped.stdout), withoutExportTime(file), 'same header fields, map, records and end record');
  t.match(JSON.parse(piped.stderr), { snapshotId: ids[1], baseId: ids[0], path: null, blocks: 2, bytes: file.length }, 'the result goes to stderr');
});

t.test('export -o - | import -i - recreates the snapshots on another host', async (t) => {
  const { a, b, hashes, ids } = await twoHosts(t);
  const pipe = (args: string): Promise<Run> => new Promise((resolve) => {
    const sh = spawn('sh', ['-c', `"${process.execPath}" "${BIN}" snapshot export ${args} -o - --socket "${a.socketPath}" | "${process.execPath}" "${BIN}" snapshot import -i - --disk vm --json --socket "${b.socketPath}"`]);
    const out: Buffer[] = [];
    let err = '';
    sh.stdout.on('data', (c: Buffer) => out.push(c));
    sh.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    sh.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
  });
  const full = await pipe('monday');
  t.equal(full.code, 0, full.stderr);
  t.match(JSON.parse(full.stdout.toString()), { snapshotId: ids[0], storedBlocks: 4, parentId: null });
  const inc = await pipe('tuesday --from monday');
  t.equal(inc.code, 0, inc.stderr);
  t.match(JSON.parse(inc.stdout.toString()), { snapshotId: ids[1], storedBlocks: 2, parentId: ids[0] });
  await b.json('clone', 'monday', join(b.imageRoot, 'monday.img'));
  await b.json('clone', 'tuesday', join(b.imageRoot, 'tuesday.img'));
  t.equal(sha256File(join(b.imageRoot, 'monday.img')), hashes[0]);
  t.equal(sha256File(join(b.imageRoot, 'tuesday.img')), hashes[1]);
});

/** Waits until the daemon's sweeper has unlinked every freed block (a refused import's). */
async function sweptBlockFiles(d: Daemon): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const stats = await d.json('store', 'stats');
    if (stats.pendingFreeBlocks === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const dir = join(d.dataDir, 'blocks');
  return readdirSync(dir).filter((n) => n !== 'tmp').reduce((a, sub) => a + readdirSync(join(dir, sub)).length, 0);
}

t.test('a truncated or corrupted stream on stdin is refused and leaves nothing behind', async (t) => {
  const { a, b } = await twoHosts(t);
  const good = (await runBytes(a, ['snapshot', 'export', 'monday', '-o', '-'])).stdout;
  const flipped = Buffer.from(good);
  flipped[good.length - 100] ^= 1; // inside the last block
  for (const [what, bytes] of [['truncated', good.subarray(0, good.length - BLOCK / 2)], ['a flipped byte', flipped], ['empty', Buffer.alloc(0)]] as const) {
    const r = await runBytes(b, ['snapshot', 'import', '-i', '-', '--disk', 'vm', '--json'], bytes);
    t.equal(r.code, 1, what);
    t.equal(JSON.parse(r.stdout.toString()).error.code, 'StreamCorrupt', what);
  }
  t.same(await b.json('snapshot', 'list'), [], 'no snapshot committed');
  t.equal(await sweptBlockFiles(b), 0, 'the blocks stored before the damage was found are gone');
  const ok = await runBytes(b, ['snapshot', 'import', '-i', '-', '--disk', 'vm', '--json'], good);
  t.equal(ok.code, 0, 'the intact stream imports afterwards: the disk was released');
});

t.test('a client killed mid-stream ends its job and holds nothing', async (t) => {
  const { a, b, ids } = await twoHosts(t);
  const good = (await runBytes(a, ['snapshot', 'export', 'monday', '-o', '-'])).stdout;

  // Export: the reader takes one chunk, then the CLI dies.
  const exp = spawn(process.execPath, [BIN, 'snapshot', 'export', 'monday', '-o', '-', '--socket', a.socketPath]);
  await new Promise<void>((resolve) => exp.stdout.once('data', () => resolve()));
  exp.stdout.pause();
  exp.kill('SIGKILL');
  await new Promise((r) => exp.once('close', r));
  const expJob = await waitForJob(a, 'export');
  t.match(expJob, { state: 'failed', error: { code: 'StreamClosed' } });
  t.match(await a.json('snapshot', 'delete', 'monday'), { id: ids[0] }, 'the snapshot is no longer pinned');

  // Import: half the stream arrives, then the CLI dies.
  const imp = spawn(process.execPath, [BIN, 'snapshot', 'import', '-i', '-', '--disk', 'vm', '--socket', b.socketPath]);
  imp.stdin.on('error', () => undefined);
  imp.stdin.write(good.subarray(0, good.length >> 1));
  const impJob = await waitForJob(b, 'import', (j) => j.doneBytes > 0);
  t.equal(impJob.state, 'running');
  imp.kill('SIGKILL');
  await new Promise((r) => imp.once('close', r));
  t.match(await waitForJob(b, 'import'), { state: 'failed', error: { code: 'StreamClosed' } });
  t.same(await b.json('snapshot', 'list'), [], 'nothing committed');
  const again = await runBytes(b, ['snapshot', 'import', '-i', '-', '--disk', 'vm', '--json'], good);
  t.equal(again.code, 0, 'the disk is free again and the daemon serves the next import');
});

t.test('-o - and -i - refuse --no-wait', async (t) => {
  const { a } = await twoHosts(t);
  const r = await runBytes(a, ['snapshot', 'export', 'monday', '-o', '-', '--no-wait', '--json']);
  t.equal(r.code, 2);
  t.equal(r.stdout.length, 0, 'nothing on stdout: it belongs to the stream');
  t.equal(JSON.parse(r.stderr).error.code, 'InvalidArgument');
  const i = await runBytes(a, ['snapshot', 'import', '-i', '-', '--disk', 'vm', '--no-wait', '--json']);
  t.equal(JSON.parse(i.stdout.toString()).error.code, 'InvalidArgument');
});

interface JobLike { kind: string; state: string; doneBytes: number; error: { code: string } | null }

/** The newest job of `kind`, once it has ended (or once `until` holds). */
async function waitForJob(d: Daemon, kind: string, until: (j: JobLike) => boolean = (j) => j.state !== 'running'): Promise<JobLike> {
  for (let i = 0; i < 300; i++) {
    const jobs = (await d.json('job', 'list')) as JobLike[];
    const job = jobs.filter((j) => j.kind === kind).pop();
    if (job && until(job)) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${kind} job reached the expected state`);
}
