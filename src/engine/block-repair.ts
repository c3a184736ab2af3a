/**
 * Repairing damaged blocks (docs/design.md, "Damaged blocks"). A stored block whose file was
 * damaged in place (a flipped payload or header byte) keeps its size, so a scan that produces the
 * block finds it "present" and would reference it as it is: the new snapshot would be committed
 * `available` and be as unrestorable as the old ones. A block file that is missing fares the same
 * where the scan finds the block equal to the parent's: that block is never looked up in the
 * store. Hashing (or even looking up) every such block on every scan to catch this would cost
 * dedup its point, so damage is recorded where it is found instead:
 *
 * - `store verify` lists the damaged and missing blocks it reports (and forgets listed ones it
 *   found intact); any reader that meets a damaged or missing block file (rollback, clone, NBD reads of a snapshot, a
 *   copy-on-write disk's base reads and its volume's background verifier, stream exports,
 *   replication) reports it through store/damage-reports.ts, and it is listed in the catalog
 *   (catalog/damaged-blocks.ts).
 * - A snapshot scan is handed the list: a block that hashes to a listed digest is written again
 *   from the bytes just read, even where it equals the parent's, to tmp/ and renamed over the
 *   damaged file, or into the missing file's place (the native block writer's temp + fsync +
 *   rename, the directory fsynced before the commit). An import does the same for a listed block
 *   it downloads.
 * - The commit clears the marks of the blocks rewritten. A listed digest the new snapshot would
 *   reference without having rewritten it (a copy-on-write disk's unwritten block that reads its
 *   base; an incremental import that did not carry it; one found damaged while the scan ran) is
 *   read and checked once more: intact, its mark goes; still damaged or still missing, the
 *   snapshot fails with the block's error instead of being committed `available`.
 */
import { BlocksnapError, type ErrorCode } from '../errors';
import type { Catalog } from '../catalog/catalog';
import { DamagedBlocks, hexDigests, viewHolds, type DamageReason } from '../catalog/damaged-blocks';
import { verifyBlocks, type VerifyProblem } from '../native';
import { watchStoreDamage, type DamageCode } from '../store/damage-reports';
import type { EngineLogger } from './engine';
import type { JobControl } from './jobs';

export interface BlockRepairInternals {
  readonly catalog: Catalog;
  readonly storeDir: string;
  readonly log: EngineLogger;
  readonly threads: number | undefined;
}

const REASON_OF: Record<DamageCode, DamageReason> = { DigestMismatch: 'digest-mismatch', BlockCorrupt: 'corrupt-header', BlockMissing: 'missing' };

/** An io-error says nothing about the file's content: a block is listed for what can be repaired. */
const REPAIRABLE: ReadonlySet<VerifyProblem['reason']> = new Set<DamageReason>(['digest-mismatch', 'corrupt-header', 'missing']);

/** The error code of each problem a block check reports. */
export const CODE_OF: Record<VerifyProblem['reason'], ErrorCode> = {
  'digest-mismatch': 'DigestMismatch', 'corrupt-header': 'BlockCorrupt', missing: 'BlockMissing', 'io-error': 'IOError',
};

export class BlockRepair {
  readonly damaged: DamagedBlocks;
  private readonly unwatch: () => void;
  /** Found by readers, not yet recorded: digest hex → reason. */
  private readonly found = new Map<string, DamageReason>();
  private recordQueued = false;
  private closed = false;

  constructor(private readonly x: BlockRepairInternals) {
    this.damaged = new DamagedBlocks(x.catalog);
    this.unwatch = watchStoreDamage(x.storeDir, (hex, code) => this.reportFound(hex, REASON_OF[code]));
  }

  close(): void {
    this.closed = true;
    this.unwatch();
  }

  /**
   * A reader found the block `hex` damaged. Recorded in a microtask: the report comes from inside
   * an error's construction, possibly during a catalog transaction, and before the reader's
   * caller sees the error (so a snapshot started right after the failed job sees the mark).
   */
  reportFound(hex: string, reason: DamageReason): void {
    if (this.closed) return;
    this.found.set(hex, reason);
    if (this.recordQueued) return;
    this.recordQueued = true;
    queueMicrotask(() => this.recordFound());
  }

  private recordFound(): void {
    this.recordQueued = false;
    if (this.closed || this.found.size === 0) return;
    const list = [...this.found];
    this.found.clear();
    try {
      const at = Date.now();
      this.x.catalog.txn(() => { for (const [hex, reason] of list) this.damaged.mark(Buffer.from(hex, 'hex'), reason, 'read', at); });
      this.x.log.warn({ blocks: list.map(([hex, reason]) => ({ digest: hex, reason })) },
        'damaged or missing block found by a read: recorded; the next snapshot or import that produces the block writes it again');
    } catch (err) {
      this.x.log.error({ err, digests: list.map(([hex]) => hex) }, 'could not record a damaged or missing block; store verify records it');
    }
  }

  /** Records for repair the blocks a check (`check`) found missing or damaged; an io-error is not listed. */
  reportProblems(problems: VerifyProblem[]): void {
    for (const p of problems) if (REPAIRABLE.has(p.reason)) this.reportFound(p.digest, p.reason as DamageReason);
  }

  /** The listed digests, packed, for a scan (ScanOptions.damagedDigests); undefined when none. */
  forScan(): Buffer | undefined {
    return this.damaged.packed();
  }

  /**
   * Before the commit of a snapshot or import (job `ctl`) whose view is `view` (n × 32) and which rewrote
   * `repaired` (hex): the listed digests it references and did not rewrite are read and checked
   * again. Those intact are forgotten (a stale mark: a repair whose commit a crash cut off, an
   * error that was not the file's); a damaged one fails with its error, whose message ends with
   * `hint` (what the operator can do). The caller holds the store lock shared, so nothing it
   * references is unlinked meanwhile.
   */
  async checkBeforeCommit(view: Buffer, repaired: Iterable<string>, hint: string, ctl: JobControl): Promise<void> {
    const suspects = this.damaged.inView(view, new Set(repaired));
    if (suspects.length === 0) return;
    const startedAt = Date.now();
    const problems = await this.check(Buffer.concat(suspects), ctl.signal);
    const bad = new Set(problems.map((p) => p.digest));
    const intact = suspects.filter((d) => !bad.has(d.toString('hex')));
    if (intact.length > 0) this.forgetIntact(intact, startedAt, ctl.job.id);
    const p = problems[0];
    if (p === undefined) return;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more damaged or missing block${problems.length > 2 ? 's' : ''})` : '';
    throw new BlocksnapError(CODE_OF[p.reason],
      `block ${p.digest} is ${p.reason === 'missing' ? 'missing from' : 'damaged in'} the store (${p.message})${more} and this snapshot would reference it without having written it again: ${hint}`,
      { digest: p.digest, damagedBlocks: problems.map((q) => q.digest) });
  }

  /**
   * Reads the blocks `digests` (n × 32, distinct) and checks each against its digest: those
   * missing, damaged or unreadable, as `store verify` reports them. Records nothing.
   */
  async check(digests: Buffer, signal?: AbortSignal): Promise<VerifyProblem[]> {
    if (digests.length === 0) return [];
    const r = await verifyBlocks({
      storeDir: this.x.storeDir, digests, ...(this.x.threads ? { threads: this.x.threads } : {}), ...(signal ? { signal } : {}),
    });
    return r.problems;
  }

  /**
   * In the commit transaction: forgets the marks of the blocks the scan rewrote, and refuses the
   * commit when the view references a listed digest it neither rewrote nor checked (found
   * damaged after checkBeforeCommit).
   */
  settle(view: Buffer, repaired: Iterable<string>, hint: string): void {
    const done = new Set(repaired);
    for (const hex of done) this.damaged.clear(Buffer.from(hex, 'hex'));
    const late = this.damaged.inView(view, done);
    if (late.length === 0) return;
    const hex = late[0]!.toString('hex');
    const reason = this.damaged.get(late[0]!)?.reason ?? 'digest-mismatch';
    throw new BlocksnapError(CODE_OF[reason],
      `block ${hex} was found ${reason === 'missing' ? 'missing from' : 'damaged in'} the store while this snapshot ran, and the snapshot would reference it without having written it again: ${hint}`,
      { digest: hex, damagedBlocks: late.map((d) => d.toString('hex')) });
  }

  /**
   * After `store verify` (started at `startedAt`, having checked `checked`, n × 32): lists what it
   * found damaged, and forgets listed digests it checked and found intact, unless they were
   * found damaged again since it started. `seenDamaged`: what its first pass found wrong, checked
   * again only while still referenced; one no longer referenced by then is still damaged on
   * disk (the sweep may not have run) and keeps its mark. A missing one that nothing references
   * any more goes: no snapshot needs it, and a scan that produces it finds no file and writes it
   * anyway. Returns how many blocks are listed.
   */
  afterVerify(problems: VerifyProblem[], checked: Buffer, startedAt: number, seenDamaged: Iterable<string>): number {
    return this.x.catalog.txn(() => {
      const now = Date.now();
      const wrong = new Set<string>(seenDamaged);
      for (const p of problems) {
        wrong.add(p.digest);
        if (REPAIRABLE.has(p.reason)) this.damaged.mark(Buffer.from(p.digest, 'hex'), p.reason as DamageReason, 'verify', now);
      }
      for (const { digest, record } of this.damaged.all()) {
        if (record.at >= startedAt || wrong.has(digest.toString('hex'))) continue;
        if (viewHolds(checked, digest) || (record.reason === 'missing' && !this.x.catalog.isReferenced(digest))) this.damaged.clear(digest);
      }
      return this.damaged.count();
    });
  }

  /**
   * Forgets the marks of blocks written again, durably, outside a snapshot (a restore that
   * downloads a listed block to write its image from the store; an import that mends a snapshot
   * here) by job `jobId`. `from` says where the good bytes came from, for the log.
   */
  forgetRepaired(hexes: string[], from: string, jobId: string): void {
    if (hexes.length === 0) return;
    try {
      this.x.catalog.txn(() => { for (const hex of hexes) this.damaged.clear(Buffer.from(hex, 'hex')); });
      this.x.log.info({ jobId, digests: hexes }, `damaged or missing blocks written again from ${from}`);
    } catch (err) {
      this.x.log.warn({ err, jobId }, 'could not forget repaired blocks; the next snapshot or store verify does');
    }
  }

  /** In a transaction that unlinks block files (sweep, gc): their marks go with them. */
  forget(digests: Iterable<Buffer>): void {
    for (const d of digests) this.damaged.clear(d);
  }

  private forgetIntact(digests: Buffer[], startedAt: number, jobId: string): void {
    try {
      this.x.catalog.txn(() => {
        for (const d of digests) if ((this.damaged.get(d)?.at ?? Infinity) < startedAt) this.damaged.clear(d);
      });
      this.x.log.info({ jobId, digests: digests.map((d) => d.toString('hex')) }, 'blocks listed as damaged read intact: no longer listed');
    } catch (err) {
      this.x.log.warn({ err, jobId }, 'could not forget blocks listed as damaged that read intact; store verify does');
    }
  }
}

export { hexDigests };
