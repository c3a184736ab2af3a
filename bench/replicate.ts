/**
 * Question: how fast does replication to S3-compatible storage go, against what the storage can
 * take? On a real Ceph radosgw (test/infra/ceph/ceph-local.sh, shared with the tests): a full
 * replication of the standard 4 GiB image (3 GiB data) and of a 1% incremental, each beside the
 * limit: raw PutObject of the same number of 4 MiB objects at the same concurrency, with the same
 * client settings. Peer for the incremental: `rbd export-diff | rbd import-diff` between two RBD
 * images of the same cluster (Ceph's own incremental copy).
 *
 * Runs inside `npm run bench` as the question `replicate` when listed there, or alone:
 *   npx ts-node --transpile-only bench/replicate.ts [--scale F] [--runs N] [--concurrency N]
 * (root is needed to install Ceph when it is missing; the cluster is stopped afterwards unless the
 * tests still use it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { randomFillSync } from 'node:crypto';
import { acquireCeph, cephInstallable, type Ceph } from '../test/infra/ceph/fixture';
import { credentialsFile, deleteBucket, newBucket, s3Client } from '../test/infra/ceph/s3';
import { parseArgs } from './lib/args';
import { BenchContext, type Question } from './lib/context';
import { BLOCK, MiB, clusteredChange } from './lib/images';
import { repeat, since, type Sample } from './lib/measure';
import { Peers } from './lib/peers';
import { markdown, SectionBuilder, type Section } from './lib/report';
import { standardImage, ratioText } from './lib/questions';
import type { ReplicateResult } from '../src/engine/offsite-types';
import type { BenchDaemon } from './lib/daemon';

const CONCURRENCY = Number(process.env.BENCH_REPLICATE_CONCURRENCY ?? 4);

/** PUTs `count` distinct 4 MiB objects with `concurrency` in flight: what the storage takes. */
async function rawPut(ceph: Ceph, bucket: string, count: number, concurrency: number, tag: string): Promise<Sample> {
  const s3 = s3Client(ceph);
  const bodies = Array.from({ length: concurrency }, () => randomFillSync(Buffer.allocUnsafe(BLOCK)));
  let next = 0;
  const t0 = process.hrtime.bigint();
  try {
    await Promise.all(bodies.map(async (body) => {
      for (let i = next++; i < count; i = next++) {
        body.writeUInt32LE(i, 0); // distinct objects, as distinct blocks are
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `raw/${tag}/${i}`, Body: body, ContentLength: body.length }));
      }
    }));
  } finally {
    s3.destroy();
  }
  return { seconds: since(t0), logicalBytes: count * BLOCK };
}

async function replicate(d: BenchDaemon, source: string, remote: string): Promise<{ sample: Sample; result: ReplicateResult }> {
  d.resetPeak();
  const t0 = process.hrtime.bigint();
  const job = await d.job('replicate', { source, remote, concurrency: CONCURRENCY });
  const result = job.result as ReplicateResult;
  return { sample: { seconds: since(t0), peakRssBytes: d.peakRss(), logicalBytes: result.uploadedBytes, extra: { uploadedBlocks: result.uploadedBlocks } }, result };
}

function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/**
 * Writes an rbd diff v1 stream (Ceph's documented export-diff format) that turns image@s1 into
 * image@s2 by rewriting the given 4 MiB blocks with the file's current content.
 */
function rbdDiff(path: string, size: number, blocks: number[], out: string): void {
  const parts: Buffer[] = [Buffer.from('rbd diff v1\n')];
  const name = (tag: string, n: string): Buffer => { const b = Buffer.alloc(5); b.write(tag, 0); b.writeUInt32LE(n.length, 1); return Buffer.concat([b, Buffer.from(n)]); };
  parts.push(name('f', 's1'), name('t', 's2'));
  const s = Buffer.alloc(9); s.write('s', 0); s.writeBigUInt64LE(BigInt(size), 1); parts.push(s);
  const fd = openSync(path, 'r');
  try {
    for (const b of blocks.sort((x, y) => x - y)) {
      const len = Math.min(BLOCK, size - b * BLOCK);
      const data = Buffer.alloc(len);
      readSync(fd, data, 0, len, b * BLOCK);
      const h = Buffer.alloc(17); h.write('w', 0); h.writeBigUInt64LE(BigInt(b * BLOCK), 1); h.writeBigUInt64LE(BigInt(len), 9);
      parts.push(h, data);
    }
  } finally {
    closeSync(fd);
  }
  parts.push(Buffer.from('e'));
  writeFileSync(out, Buffer.concat(parts));
}

/** `rbd export-diff --from-snap s1 src@s2 - | rbd import-diff - dst`, timed. */
function rbdPipe(env: NodeJS.ProcessEnv): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const exp = spawn('rbd', ['export-diff', '--no-progress', '--from-snap', 's1', 'rbd/src@s2', '-'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const imp = spawn('rbd', ['import-diff', '--no-progress', '-', 'rbd/dst'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
    exp.stdout.pipe(imp.stdin);
    let err = '';
    exp.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    imp.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    imp.on('exit', (code) => (code === 0 ? resolve({ seconds: since(t0) }) : reject(new Error(`rbd import-diff exited ${code}: ${err}`))));
  });
}

export const replicateQuestion: Question = {
  name: 'replicate',
  // Most of its time is Ceph's (and its start); the ratio to raw PUT holds at 192 blocks (0.98x measured).
  defaultRunScale: 0.25,
  // A cluster comes up in about a minute where Ceph is installed; installing it takes many.
  skipInDefaultRun: () => (commandExists('radosgw') ? null : 'Ceph (radosgw) is not installed; `npm run bench -- replicate` installs it when root'),
  async run(ctx: BenchContext): Promise<Section> {
    const s = new SectionBuilder('replicate', `Replication to Ceph radosgw (concurrency ${CONCURRENCY})`);
    const can = cephInstallable();
    if (!can.ok) {
      s.missing('full replication', 'blocksnap replicate', `not run: ${can.why}`);
      return s.build();
    }
    const { ceph, release } = acquireCeph();
    try {
      const img = standardImage(ctx, 'replicate.img');
      const credDir = ctx.dir('replicate-cred');
      const cred = credentialsFile(credDir, ceph);
      await ctx.withDaemon('replicate', { imageRoot: img.root }, async (d) => {
        const disk = await d.addDisk(img.path, 'bench');
        const base = await d.snapshot(disk, 'base');
        // Full: a fresh bucket per run, so every block is uploaded.
        // Ours and the raw PUTs alternate run by run, so that load from elsewhere hits both alike.
        let fullBlocks = 0;
        const rawFullSamples: Sample[] = [];
        const full = await repeat(ctx.runs, async (run) => {
          const bucket = await newBucket(ceph, `full${run}`);
          await d.call('remote.add', { name: `full${run}`, endpoint: ceph.endpoint, bucket, credentialsFile: cred });
          const r = await replicate(d, base.id, `full${run}`);
          fullBlocks = r.result.uploadedBlocks;
          await deleteBucket(ceph, bucket); // the OSD is a sparse file of bounded size
          const raw = await newBucket(ceph, `raw${run}`);
          rawFullSamples.push(await rawPut(ceph, raw, fullBlocks, CONCURRENCY, `full${run}`));
          await deleteBucket(ceph, raw);
          return r.sample;
        });
        const rawFull = await repeat(ctx.runs, async (run) => rawFullSamples[run]!);
        const fullCase = `full, ${+(img.size / 2 ** 30).toFixed(2)} GiB image`;
        s.add(fullCase, `raw PUT of ${fullBlocks} × 4 MiB`, 'limit', rawFull);
        const fr = s.add(fullCase, 'blocksnap replicate', 'ours', full, { limit: { tool: `raw PUT of ${fullBlocks} × 4 MiB` }, paired: true, note: `${fullBlocks} blocks uploaded` });
        s.target('full replication', '≥ 0.8× raw PUT throughput', fr.ratio === null ? '–' : `${(1 / fr.ratio).toFixed(2)}× raw PUT`, fr.ratio === null ? null : 1 / fr.ratio >= 0.8, s.samplesOf(fr));

        // Incremental: one remote; each run changes 1% of the blocks and replicates the new snapshot.
        const incBucket = await newBucket(ceph, 'inc');
        await d.call('remote.add', { name: 'inc', endpoint: ceph.endpoint, bucket: incBucket, credentialsFile: cred });
        await d.job('replicate', { source: base.id, remote: 'inc', concurrency: CONCURRENCY });
        const rawBucket = await newBucket(ceph, 'raw-inc');
        const rawIncSamples: Sample[] = [];
        const inc = await repeat(ctx.runs, async (run) => {
          clusteredChange(img.path, img.size, 1000 + run, 0);
          const snap = await d.snapshot(disk, `inc${run}`);
          const r = await replicate(d, snap.id, 'inc');
          rawIncSamples.push(await rawPut(ceph, rawBucket, r.result.uploadedBlocks, CONCURRENCY, `inc${run}`));
          return r.sample;
        });
        const incBlocks = Math.round(inc.extra.uploadedBlocks ?? 0);
        const rawInc = await repeat(ctx.runs, async (run) => rawIncSamples[run]!);
        await deleteBucket(ceph, incBucket);
        await deleteBucket(ceph, rawBucket);
        s.add('1% incremental', `raw PUT of ${incBlocks} × 4 MiB`, 'limit', rawInc);
        const ir = s.add('1% incremental', 'blocksnap replicate', 'ours', inc, { limit: { tool: `raw PUT of ${incBlocks} × 4 MiB` }, paired: true, note: `${incBlocks} blocks uploaded of ${img.size / BLOCK}` });
        s.target('1% incremental replication', '≥ 0.8× raw PUT throughput', ir.ratio === null ? '–' : `${(1 / ir.ratio).toFixed(2)}× raw PUT`, ir.ratio === null ? null : 1 / ir.ratio >= 0.8, s.samplesOf(ir));

        // Peer: Ceph's own incremental copy between two RBD images of the same cluster.
        try {
          const env = { ...process.env, CEPH_CONF: ceph.cephConf };
          sh('ceph', ['osd', 'pool', 'create', 'rbd', '8', '8'], env);
          sh('rbd', ['pool', 'init', 'rbd'], env);
          for (const i of ['src', 'dst']) { // leftovers of an earlier run on a kept cluster
            spawnSync('rbd', ['snap', 'purge', '--no-progress', `rbd/${i}`], { env });
            spawnSync('rbd', ['rm', '--no-progress', `rbd/${i}`], { env });
          }
          sh('rbd', ['import', '--no-progress', img.path, 'rbd/src'], env); // the image as it is now
          sh('rbd', ['snap', 'create', 'rbd/src@s1'], env);
          sh('rbd', ['create', '--size', `${Math.ceil(img.size / MiB)}M`, 'rbd/dst'], env);
          sh('bash', ['-c', 'rbd export-diff --no-progress rbd/src@s1 - | rbd import-diff --no-progress - rbd/dst'], env);
          const peer = await repeat(ctx.runs, async (run) => {
            const ch = clusteredChange(img.path, img.size, 2000 + run, 0);
            const diff = join(ctx.scratch, 'change.rbddiff');
            rbdDiff(img.path, img.size, [...ch.blocks], diff);
            sh('rbd', ['import-diff', '--no-progress', diff, 'rbd/src'], env); // src@s1 → src@s2
            const sample = { ...(await rbdPipe(env)), logicalBytes: ch.blocks.size * BLOCK };
            for (const i of ['src', 'dst']) { sh('rbd', ['snap', 'rm', `rbd/${i}@s1`], env); sh('rbd', ['snap', 'rename', `rbd/${i}@s2`, `rbd/${i}@s1`], env); }
            return sample;
          });
          for (const i of ['src', 'dst']) { sh('rbd', ['snap', 'purge', '--no-progress', `rbd/${i}`], env); sh('rbd', ['rm', '--no-progress', `rbd/${i}`], env); }
          s.add('1% incremental', 'rbd export-diff \\| rbd import-diff', 'peer', peer, { limit: { tool: `raw PUT of ${incBlocks} × 4 MiB` }, note: 'RBD to RBD in the same cluster' });
        } catch (err) {
          s.missing('1% incremental', 'rbd export-diff \\| rbd import-diff', `failed: ${(err as Error).message.split('\n')[0]}`);
        }
        s.note(`Throughput counts the bytes uploaded. Raw PUT uses the same SDK settings (path style, checksums when required) and ${CONCURRENCY} requests in flight; the SDK hashes each of its bodies for the signature and it reads nothing. blocksnap reads each block from the store, finds out what the remote has (a listing, or HEADs) and hashes nothing: each PUT is signed with the block's digest and radosgw checks the body against it. The incremental adds the writer lease (its PUT and LIST run beside the block uploads, its DELETE after the result), a HEAD of each changed block before and again under the lease, HEADs of the snapshot's and its parent's manifests, and the manifest PUT.`);
        s.note(`Ratios: ${ratioText(fr.ratio)} (full) and ${ratioText(ir.ratio)} (incremental) of the raw PUT time.`);
      });
    } finally {
      release();
    }
    return s.build();
  },
};

if (require.main === module) {
  void (async () => {
    const args = parseArgs(process.argv.slice(2).filter((a) => a !== 'replicate'), ['replicate']);
    const scratch = mkdtempSync(join(args.workDir ?? tmpdir(), 'blocksnap-bench-'));
    const log = (m: string): void => { process.stderr.write(`bench: ${m}\n`); };
    try {
      const ctx = new BenchContext(args, scratch, Peers.prepare(scratch, false, log), log);
      process.stdout.write(markdown(await replicateQuestion.run(ctx)));
    } finally {
      if (!args.keep) rmSync(scratch, { recursive: true, force: true });
    }
  })().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
