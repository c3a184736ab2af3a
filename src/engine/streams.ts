/**
 * Host-to-host snapshot streams (src/stream/format.ts, docs/stream-format.md): `export` writes one
 * snapshot, full or over a base, to a new file inside an image root; `import` reads such a file and
 * recreates the snapshot here with the same id and digests, on top of the base it names.
 *
 * The daemon reads and writes the stream files itself, at paths checked against the image roots
 * like clone targets: the daemon usually runs as root and its socket users do not, so it opens
 * only what they could name as an image, and never through a symlink (openCheckedFile to read,
 * partial-files.ts to write), gives a new file its name only once complete, never overwrites. The file then travels by any
 * means (scp, rsync, a USB disk).
 *
 * Either end may instead be a channel through the daemon's socket to the client's stdin or stdout
 * (src/daemon/stream-channels.ts): the same bytes, written and read by the same code.
 *
 * A stream of a snapshot that is here already, with the same map, mends it instead of being
 * refused: the snapshot's blocks that are missing or damaged are written again from the stream,
 * and nothing is committed (import-mend.ts).
 *
 * Import refuses (BaseMissing) a stream whose base is not here with the very same content (the
 * SHA-256 of the base's packed view), and (StreamCorrupt) any damage; nothing is committed then.
 * Blocks stored before the damage was found are unreferenced: they cannot be unlinked here, since
 * a snapshot running meanwhile may have found them and will reference them, so they go on the
 * free list and the sweeper unlinks them once no snapshot is writing.
 */
import { ByteBudget } from '../byte-budget';
import { BlocksnapError } from '../errors';
import { readView } from '../catalog/block-map';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import { findBlock, readBlock, sha256Async, writeBlock } from '../store/block-io';
import { DIGEST_SIZE, isZeroDigest } from '../store/format';
import { fileSink, fileSource, type ByteSink, type ByteSource } from '../stream/byte-io';
import { StreamReader, StreamWriter, viewSha256, type StreamHeader } from '../stream/format';
import { distinctDigests } from '../stream/snapshot-fields';
import { withDamageGuidance } from './damage-guidance';
import { newId } from './ids';
import { checkImportDamage, checkImportable, commitImported, damagedLocalBlock, lostLocalBlock, syncFoundBlocks } from './import-commit';
import { checkSameMap, damageOf, settleMend, snapshotToMend, STREAM, unmended } from './import-mend';
import type { OffsiteInternals } from './offsite-internals';
import type { ExportResult, ImportResult } from './offsite-types';
import { openCheckedFile, resolveExistingStream, resolveNewFile, type CheckedFile } from './paths';
import { newFileFor, resolvedFor, type UserAccess } from './user-access';
import { writePartial } from './partial-files';
import type { Job } from './types';
import type { FileIdentity, VerifyProblem } from '../native';

/**
 * The other end of a stream that is not a file: the daemon's socket channel to a client's stdin
 * or stdout. `close` stops a pending read or write with the given error (the job was cancelled).
 */
export interface StreamChannel {
  close(err: Error): void;
}
export type OutChannel = ByteSink & StreamChannel;
export type InChannel = ByteSource & StreamChannel;

/**
 * The bytes of block maps all imports may hold at once. An import holds its whole map (32 bytes a
 * block, up to 4 GiB for the 2^27 blocks a header may claim) until it commits, and a client sends
 * it at its own pace: without a shared bound, a few clients with forged headers, each on its own
 * disk, would hold many GiB of daemon memory. A map larger than the whole budget is granted once
 * no other import holds one (ByteBudget), so it waits rather than fail.
 */
export const IMPORT_MAP_BUDGET = 1024 * 1024 * 1024;

export class SnapshotStreams {
  /** Map bytes held by running imports (IMPORT_MAP_BUDGET). */
  readonly mapBudget: ByteBudget;

  constructor(private readonly x: OffsiteInternals, mapBudgetBytes = IMPORT_MAP_BUDGET) {
    this.mapBudget = new ByteBudget(mapBudgetBytes);
  }

  /**
   * The base of an incremental export: a snapshot of the same disk, whether named or given by id.
   * A name only another disk's snapshots have resolves to that snapshot as its id would, so that
   * both are refused alike, saying whose it is, where "no snapshot" sent the user looking for a
   * typo in a name `snapshot show` finds.
   */
  private resolveBase(ref: string, snap: SnapshotRecord): SnapshotRecord {
    let base: SnapshotRecord;
    try {
      base = this.x.resolveSnapshot(ref, snap.diskId);
    } catch (err) {
      if (!(err instanceof BlocksnapError) || err.code !== 'SnapshotNotFound') throw err;
      try {
        base = this.x.resolveSnapshot(ref);
      } catch {
        throw err; // no such name anywhere, or one several other disks share: "no snapshot" holds
      }
    }
    if (base.diskId !== snap.diskId) {
      const diskName = (id: string): string => this.x.catalog.getDisk(id)?.name ?? id;
      throw new BlocksnapError('SnapshotNotFound',
        `base ${base.id} (${base.name}) is a snapshot of disk ${diskName(base.diskId)}, not of ${diskName(snap.diskId)}: ` +
        'the base of an incremental export must be a snapshot of the same disk');
    }
    return base;
  }

  /**
   * Exports to a new file at `to` (a path inside an image root), or through a channel. `o.user`:
   * the client's rights, when it is neither root nor the daemon's user; the file is given to it.
   */
  startExport(snapRef: string, to: string | OutChannel, o: { base?: string; user?: UserAccess } = {}): Job {
    this.x.assertOpen();
    const snap = this.x.resolveSnapshot(snapRef);
    requireAvailable(snap);
    const base = o.base === undefined ? null : this.resolveBase(o.base, snap);
    if (base) requireAvailable(base);
    if (base?.id === snap.id) throw new BlocksnapError('InvalidArgument', 'a snapshot cannot be exported over itself');
    const target = typeof to === 'string' ? newFileFor(o.user, to, () => resolveNewFile(to, this.x.imageRoots)) : null;
    const unpins = [this.x.pin(snap.id), ...(base ? [this.x.pin(base.id)] : [])];
    // The target's directory stays held (newFileFor) until writePartial has opened it, or the job ends.
    const unpin = (): void => {
      unpins.forEach((u) => u());
      o.user?.release();
    };
    try {
      const jobId = newId('j');
      return this.x.jobs.start(jobId, 'export', { diskId: snap.diskId, snapshotId: snap.id, target }, async (ctl): Promise<ExportResult> => {
        try {
          const view = readView(this.x.catalog, snap);
          const baseView = base ? readView(this.x.catalog, base) : null;
          const have = baseView ? viewDigests(baseView) : new Set<string>();
          const send: string[] = [];
          for (let i = 0; i < snap.blockCount; i++) {
            if (isZeroDigest(view, i * DIGEST_SIZE)) continue;
            const hex = view.toString('hex', i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE);
            if (!have.has(hex)) { have.add(hex); send.push(hex); }
          }
          const disk = this.x.catalog.getDisk(snap.diskId);
          const header: StreamHeader = {
            snapshot: {
              id: snap.id, diskId: snap.diskId, diskName: disk?.name ?? snap.diskId, name: snap.name, description: snap.description, type: snap.type,
              parentId: snap.parentId, createdAt: snap.createdAt, sizeBytes: snap.sizeBytes, blockSize: snap.blockSize, blockCount: snap.blockCount,
              logicalBytes: snap.logicalBytes, consistency: snap.consistency ?? null,
            },
            base: base && baseView ? { id: base.id, viewSha256: viewSha256(baseView) } : null,
            exportedAt: this.x.now().toISOString(),
          };
          const stopOnCancel = (): void => { if (typeof to !== 'string') to.close(new BlocksnapError('Cancelled', 'export cancelled')); };
          ctl.signal.addEventListener('abort', stopOnCancel);
          const emit = async (sink: ByteSink): Promise<StreamWriter> => {
            const w = new StreamWriter(sink);
            await w.preamble(header);
            await w.map(view);
            ctl.progress(0, send.length * snap.blockSize);
            for (const hex of send) {
              if (ctl.signal.aborted) throw new BlocksnapError('Cancelled', 'export cancelled');
              await w.block(Buffer.from(hex, 'hex'), await readBlock(this.x.store.dir, hex));
              ctl.progress(w.dataBytes, Math.max(w.dataBytes, send.length * snap.blockSize));
            }
            await w.end();
            return w;
          };
          try {
            // A stream file, like a clone, has its name only once complete, and is created in its
            // directory held open, never by path (partial-files.ts).
            const w = target === null ? await emit(to as OutChannel) : await writePartial(target, jobId, async (partial, at) => {
              const file = at.create();
              try {
                const written = await emit(fileSink(file, partial));
                await file.complete();
                return written;
              } finally {
                await file.close();
              }
            }, o.user);
            this.x.log.info({ jobId, snapshotId: snap.id, baseId: base?.id ?? null, path: target, blocks: w.blocks, bytes: w.bytes }, 'snapshot exported');
            return { snapshotId: snap.id, baseId: base?.id ?? null, path: target, blocks: w.blocks, bytes: w.bytes };
          } catch (err) {
            throw withDamageGuidance(err, `snapshot ${snap.name} (${snap.id} of disk ${header.snapshot.diskName})`,
              'export it again (what was written of this stream is incomplete, and an import refuses it)');
          } finally {
            ctl.signal.removeEventListener('abort', stopOnCancel);
          }
        } finally {
          unpin();
        }
      });
    } catch (err) {
      unpin();
      throw err;
    }
  }

  /** Imports from a stream file at `from` (inside an image root), or from a channel. */
  /** `user`: the client's rights, when it is neither root nor the daemon's user; it must be able to read the file. */
  startImport(from: string | InChannel, diskRef: string, user?: UserAccess): Job {
    this.x.assertOpen();
    // Checked (inside a root, a regular file) here, opened in the job: see openCheckedFile for
    // what may have changed in between. The file the user's rights were decided on is held until
    // then, and the job opens only that one (sourceId).
    const source = typeof from === 'string' ? resolvedFor(user, from, () => resolveExistingStream(from, this.x.imageRoots)) : null;
    let sourceId: FileIdentity | undefined;
    let release: () => void = () => user?.release();
    try {
      if (source !== null) sourceId = user?.checkFile(source, from as string, ['read']);
      const disk = this.x.resolveDisk(diskRef);
      const jobId = newId('j');
      const unlock = this.x.diskLocks.acquire(disk.id, jobId);
      let released = false;
      release = () => {
        if (released) return;
        released = true;
        user?.release();
        unlock();
      };
      return this.startImportJob(from, source, sourceId, disk, jobId, release);
    } catch (err) {
      release();
      throw err;
    }
  }

  /** startImport's job, once the source is checked and the disk locked; `release` undoes both when it ends. */
  private startImportJob(from: string | InChannel, source: string | null, sourceId: FileIdentity | undefined, disk: DiskRecord, jobId: string,
    release: () => void): Job {
    try {
      return this.x.jobs.start(jobId, 'import', { diskId: disk.id, snapshotId: null, target: source }, async (ctl): Promise<ImportResult> => {
        let file: CheckedFile | null = null;
        let mapBytes = 0;
        const stopOnCancel = (): void => { if (typeof from !== 'string') from.close(new BlocksnapError('Cancelled', 'import cancelled')); };
        ctl.signal.addEventListener('abort', stopOnCancel);
        try {
          // Inside the try: a failed open must release the disk lock too.
          file = source === null ? null : openCheckedFile(source, from as string, sourceId);
          const size = file ? (await file.stat()).size : null;
          const r = new StreamReader(file ? fileSource(file) : (from as InChannel));
          const counts = { blocks: 0, bytes: 0 };
          /** Block bytes the stream carries, known once its map is read: a stream through the socket has no size. */
          let carries = 0;
          const progress = (): void => {
            if (size !== null) ctl.progress(r.bytesRead, size);
            else ctl.progress(counts.bytes, carries);
          };
          const h = await r.preamble();
          const s = h.snapshot;
          ctl.recordSnapshot(s.id);
          // A stream of a snapshot that is here already mends it (import-mend.ts): no quota counts.
          const mending = snapshotToMend(this.x, s, disk.id, STREAM);
          if (!mending) checkImportable(this.x, s, this.x.catalog.getDisk(disk.id)!);
          if (h.base) {
            const base = this.x.catalog.getSnapshot(h.base.id);
            if (!base || base.status !== 'available') {
              throw new BlocksnapError('BaseMissing', `the stream is incremental over snapshot ${h.base.id}, which this host does not have; import that snapshot (or a full stream) first`, { baseId: h.base.id });
            }
            if (viewSha256(readView(this.x.catalog, base)) !== h.base.viewSha256) {
              throw new BlocksnapError('BaseMissing', `snapshot ${h.base.id} exists here with different content than the stream's base`, { baseId: h.base.id });
            }
          }
          // Waits, reading nothing more (the sender is held back), while other imports hold their maps.
          if (!(await this.mapBudget.acquire(s.blockCount * DIGEST_SIZE, ctl.signal))) throw new BlocksnapError('Cancelled', 'import cancelled');
          mapBytes = s.blockCount * DIGEST_SIZE;
          const map = await r.map(s.blockCount);
          if (mending) checkSameMap(this.x, mending, map, STREAM);
          // Each named digest with the length its positions require (blockSize, or the shorter last block).
          const wanted = distinctDigests(map, s.sizeBytes, s.blockSize,
            (hex) => new BlocksnapError('StreamCorrupt', `the stream's map names block ${hex} at positions that need different lengths`, { digest: hex }));
          // The exporter sends each named block its base's view lacks (docs/stream-format.md).
          const baseRec = h.base ? this.x.catalog.getSnapshot(h.base.id) : undefined;
          const baseHas = baseRec ? viewDigests(readView(this.x.catalog, baseRec)) : new Set<string>();
          for (const [hex, length] of wanted) if (!baseHas.has(hex)) carries += length;
          const carried = new Set<string>();
          /** Blocks the snapshot will reference that this import found in the store already. */
          const present: string[] = [];
          const res: ImportResult = {
            snapshotId: s.id, diskId: disk.id, parentId: null, name: s.name, renamedFrom: null, storedBlocks: 0, storedBytes: 0, presentBlocks: 0, repairedBlocks: 0,
            mended: mending !== undefined,
          };
          /**
           * The shared store lock, from the first block's arrival (or the stream's end) to the
           * commit: a sender that stops before sending a block holds nothing a gc waits for, and
           * so nothing every later snapshot would wait for behind that gc. Once held, a slow sender
           * keeps it until the stream ends or stalls (the channel's stall limit).
           */
          let releaseStore = (): void => {};
          const takeStore = async (): Promise<void> => { releaseStore = await this.x.storeLock.acquireShared(ctl.signal); };
          /** Blocks this import added to the store: handed to the sweeper if the stream is refused. */
          const stored: Buffer[] = [];
          /** Blocks listed as damaged that this import wrote again (block-repair.ts). */
          const repaired: string[] = [];
          /**
           * When mending: the snapshot's blocks found missing or damaged, by hex. Read under the
           * store lock, which the blocks' rewrites hold too, so no gc runs in between.
           */
          let damaged = new Map<string, VerifyProblem>();
          let committed = false;
          try {
            progress();
            for (let first = true; ; first = false) {
              if (ctl.signal.aborted) throw new BlocksnapError('Cancelled', 'import cancelled');
              const rec = await r.next(s.blockSize, counts);
              if (first) {
                await takeStore();
                if (mending) damaged = await damageOf(this.x, wanted.keys(), ctl.signal);
              }
              if (rec === null) break;
              const hex = rec.digest.toString('hex');
              const length = wanted.get(hex);
              if (length === undefined) throw new BlocksnapError('StreamCorrupt', `the stream carries block ${hex}, which its map does not name`);
              // The digest proves the bytes, not that they fit where the map puts them: a block of the
              // wrong length would be stored and fail every later read of the snapshot.
              if (rec.data.length !== length) {
                throw new BlocksnapError('StreamCorrupt', `block ${hex} in the stream has ${rec.data.length} bytes; its position in the map needs ${length}`, { digest: hex });
              }
              if (!(await sha256Async(rec.data)).equals(rec.digest)) throw new BlocksnapError('StreamCorrupt', `block ${hex} in the stream does not match its digest`, { digest: hex });
              carried.add(hex);
              counts.blocks++;
              counts.bytes += rec.data.length;
              const repair = mending ? damaged.has(hex) : this.x.repair.damaged.has(rec.digest);
              const wrote = await writeBlock(this.x.store.dir, hex, rec.data, { repair });
              if (wrote !== 'present') {
                stored.push(Buffer.from(rec.digest));
                if (wrote === 'repaired') {
                  repaired.push(hex);
                  res.repairedBlocks++;
                } else {
                  res.storedBlocks++;
                  res.storedBytes += rec.data.length;
                }
              } else {
                res.presentBlocks++;
                present.push(hex);
              }
              progress();
            }
            if (mending) {
              // Nothing to commit: the snapshot's record and view are as they were.
              const left = [...damaged.values()].filter((p) => !carried.has(p.digest));
              settleMend(this.x, mending, s.name, res, repaired, `a stream of snapshot ${s.id}`, jobId);
              if (left.length > 0) throw unmended(this.x, s.id, left, res.repairedBlocks);
              this.x.log.info({ jobId, snapshotId: s.id, diskId: disk.id, path: source, repairedBlocks: res.repairedBlocks }, 'snapshot mended from a stream of itself');
              return res;
            }
            for (const [hex, length] of wanted) {
              // A block the stream left out because this host has it: the map may still put it where its
              // length cannot fit, and the file here may be damaged.
              if (carried.has(hex)) continue;
              const found = await findBlock(this.x.store.dir, hex, length);
              if (found.kind === 'otherLength') {
                throw new BlocksnapError('StreamCorrupt',
                  `the stream's map puts block ${hex} at a position of ${length} bytes; the block this host has under that digest has ${found.length}`, { digest: hex });
              }
              if (found.kind === 'damaged') throw damagedLocalBlock(hex, length, found);
              if (found.kind === 'absent') {
                // Snapshots here name it: the base is here, and the store lost the file.
                if (this.x.catalog.isReferenced(Buffer.from(hex, 'hex'))) throw lostLocalBlock(this.x, hex);
                // The base is here with the stream's content (checked above), and no snapshot here
                // names the block: the stream's map names a block its sender should have carried.
                throw new BlocksnapError('StreamCorrupt', `block ${hex} of snapshot ${s.id} is neither in the stream nor in the local store`, { digest: hex });
              }
              present.push(hex);
            }
            await syncFoundBlocks(this.x, present);
            await checkImportDamage(this.x, map, repaired, ctl);
            const rec = commitImported(this.x, this.x.catalog.getDisk(disk.id)!, s, map, jobId, repaired);
            committed = true;
            res.parentId = rec.parentId;
            res.name = rec.name;
            res.renamedFrom = rec.name === s.name ? null : s.name;
            this.x.log.info({ jobId, snapshotId: s.id, diskId: disk.id, path: source, storedBytes: res.storedBytes }, 'snapshot imported from a stream');
            return res;
          } finally {
            releaseStore();
            if (!committed) this.x.releaseOrphans(stored);
          }
        } finally {
          this.mapBudget.release(mapBytes);
          ctl.signal.removeEventListener('abort', stopOnCancel);
          try {
            await file?.close();
          } finally {
            release();
          }
        }
      });
    } catch (err) {
      release();
      throw err;
    }
  }
}

function requireAvailable(s: SnapshotRecord): void {
  if (s.status !== 'available') throw new BlocksnapError('SnapshotNotAvailable', `snapshot ${s.id} is ${s.status}`);
}

/** The distinct non-ZERO digests of a packed view, as hex. */
function viewDigests(view: Buffer): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i * DIGEST_SIZE < view.length; i++) if (!isZeroDigest(view, i * DIGEST_SIZE)) out.add(view.toString('hex', i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE));
  return out;
}
