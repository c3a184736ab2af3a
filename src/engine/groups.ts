/**
 * Snapshot groups ("instance snapshots"): one snapshot of each of several disks of a VM, taken
 * together and handled as one. Its copy-on-write members share one instant (shared-instant.ts);
 * image files are scanned, each at its own moment. A group is created only when every disk is
 * free at that moment: every check runs first and every member snapshot starts in the same turn
 * of the event loop, so no other job can slip in between and no member starts while another disk
 * would refuse. Then
 * either every member becomes `available` (the group too), or the group ends `error` and its
 * members are removed (except those already in use, see mustStay, which stay in the error group
 * until `group delete`): a group is never left half made. A member cannot be deleted on its own
 * (SnapshotInGroup) but can be rolled back or cloned on its own.
 *
 * States: creating → available | error. After a crash, a group still `creating` becomes `error`
 * and its members are removed at the next start (recover()). Each member's record commits with its
 * place in the group's list (Engine.startSnapshot), so the list names every member; a catalog
 * written before that held snapshots naming a group that did not list them, which recover() and
 * `group delete` also take (membersOf).
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { GroupRecord } from '../catalog/model-records';
import type { SnapshotRecord } from '../catalog/records';
import type { Engine } from './engine';
import type { EngineInternals } from './internals';
import { newId, resolveIdOrName } from './ids';
import { snapshotNameTaken, uniqueName, validateManualSnapshotName } from './names';
import { validateDescription } from './text-fields';
import { checkDiskPath } from './disk-path';
import { servedWithClients } from './cow-disks';
import { checkNotBacking } from './backing-dependents';
import { checkNotInUse, checkRollbackTarget } from './image-access';
import { inspectDiskImage } from './registrant-access';
import { quotaEvictions } from './quotas';
import { removeSnapshot } from './remove-snapshot';
import { SharedInstant } from './shared-instant';
import type { Disk, Job } from './types';

export const GROUP_DISKS_MAX = 64;

export type Group = GroupRecord;

export interface GroupCreateOptions {
  disks: string[];
  name?: string;
  description?: string;
}

export interface GroupRollback {
  groupId: string;
  /** One rollback job per member, in the group's disk order. */
  jobs: Job[];
}

function defaultGroupName(now: Date): string {
  const iso = now.toISOString();
  return `group-${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}`;
}

export class SnapshotGroups {
  constructor(private readonly engine: Engine, private readonly i: EngineInternals) {}

  /**
   * Checks every disk, then starts every member snapshot. Returns the group as started, its
   * member snapshot jobs, and a promise of the group once it is `available` or `error`.
   */
  create(o: GroupCreateOptions): { group: Group; jobs: Job[]; done: Promise<Group> } {
    if (!Array.isArray(o.disks) || o.disks.length === 0 || o.disks.length > GROUP_DISKS_MAX) {
      throw new BlocksnapError('InvalidArgument', `a group takes 1 to ${GROUP_DISKS_MAX} disks`);
    }
    const disks = o.disks.map((ref) => this.engine.getDisk(ref));
    const ids = new Set(disks.map((d) => d.id));
    if (ids.size !== disks.length) throw new BlocksnapError('InvalidArgument', 'a disk appears twice in the group');
    const desc = validateDescription(o.description ?? '');
    const now = this.i.now();
    const snapsOf = new Map(disks.map((d) => [d.id, this.i.catalog.snapshotsOfDisk(d.id)]));
    const nameTaken = (n: string): boolean => this.i.model.allGroups().some((g) => g.name === n) || disks.some((d) => snapsOf.get(d.id)!.some((s) => s.name === n));
    let name: string;
    if (o.name !== undefined) {
      name = validateManualSnapshotName(o.name, 'group');
      if (this.i.model.allGroups().some((g) => g.name === name)) throw new BlocksnapError('NameTaken', `a group named ${JSON.stringify(name)} exists already`);
      for (const d of disks) {
        const holder = snapsOf.get(d.id)!.find((s) => s.name === name);
        if (holder) throw snapshotNameTaken(d.name, holder);
      }
    } else {
      name = uniqueName(defaultGroupName(now), nameTaken);
    }
    // Every disk and image file free, and no two members on one file, before any member starts.
    this.i.diskLocks.checkFree(disks, '; no member of the group was started');
    for (const d of disks) this.checkSnapshotable(d, snapsOf.get(d.id)!);

    // An image file is read while its VM may write it, over the seconds its scan takes: only
    // copy-on-write members can share an instant.
    const cow = disks.filter((d) => d.cow).map((d) => d.id);
    const instant = cow.length > 1 ? new SharedInstant(new Set(cow), (fn) => this.i.catalog.txn(fn)) : undefined;
    const group: GroupRecord = {
      id: newId('g'), name, description: desc, status: 'creating', diskIds: disks.map((d) => d.id), snapshotIds: [],
      createdAt: now.toISOString(), completedAt: null, error: null, consistency: cow.length === disks.length ? 'point-in-time' : 'per-disk',
    };
    this.i.model.txn(() => this.i.model.putGroup(group));
    const jobs: Job[] = [];
    try {
      for (const d of disks) jobs.push(this.engine.startSnapshot(d.id, { name, description: desc, groupId: group.id, ...(d.cow && instant ? { instant } : {}) }));
    } catch (err) {
      // Not expected after the checks above (it would be a catalog failure): undo what started.
      // The group reads `error` at once; its members are ended once their cancelled jobs are.
      const e = toBlocksnapError(err);
      const error = { code: e.code, message: e.message };
      for (const j of jobs) this.engine.cancelJob(j.id);
      this.i.model.txn(() => this.i.model.putGroup({ ...(this.i.model.getGroup(group.id) ?? group), status: 'error', error }));
      Promise.all(jobs.map((j) => this.engine.waitJob(j.id))).then(() => this.fail(group.id, error)).catch((failErr: unknown) =>
        this.i.log.error({ err: failErr, groupId: group.id }, 'could not end the members of a group that failed to start; group delete ends them'));
      throw err;
    }
    const started = this.i.model.getGroup(group.id)!;
    this.i.log.info({ groupId: group.id, disks: group.diskIds }, 'group snapshot started');
    const done = this.settle(started, jobs, instant);
    // Nobody may wait for it (--no-wait): a failure to even record the outcome must still be seen.
    done.catch((err: unknown) => this.i.log.error({ err, groupId: group.id }, 'could not record the outcome of a group snapshot'));
    return { group: started, jobs, done };
  }

  list(): Group[] { return this.i.model.allGroups(); }

  get(ref: string): Group { return this.resolve(ref); }

  /**
   * Rolls every member disk back to its member snapshot. Every disk must pass the rollback checks
   * first (group available, member available, disk free, image in place, no QEMU process holding
   * it unless forced, no qcow2 internal snapshots to lose nor attributes its new image could not
   * take): a rollback starts writing as soon as it starts, so a refusal after the first one would
   * leave the VM's disks at different points. The qcow2 members' new images must fit beside
   * their disks all at once: they are written side by side.
   * Then every rollback starts in the same turn.
   */
  rollback(ref: string, o: { force?: boolean } = {}): GroupRollback {
    const g = this.resolve(ref);
    if (g.status !== 'available') throw groupNotAvailable(g);
    const members = g.snapshotIds.map((id) => this.member(g, id));
    const reserved = new Map<string, number>();
    const disks = members.map((s) => {
      const disk = this.i.catalog.getDisk(s.diskId);
      if (!disk) throw new BlocksnapError('DiskNotFound', `disk ${s.diskId} of group ${g.name} no longer exists`);
      return disk;
    });
    // The disks and their image files: a member whose file another disk's job holds would be
    // refused only once the members before it had started.
    this.i.diskLocks.checkFree(disks, `; no member of group ${g.name} was rolled back`);
    for (const [k, s] of members.entries()) {
      const disk = disks[k]!;
      if (s.status !== 'available') throw new BlocksnapError('SnapshotNotAvailable', `member ${s.id} of group ${g.name} is ${s.status}`);
      if (disk.cow) {
        // Its rollback changes only its layers (under the data dir, not an image root); what
        // can refuse it is clients on its writable export.
        servedWithClients(this.engine.exports, disk, o.force === true);
        continue;
      }
      const real = checkDiskPath(disk, this.engine.imageRoots);
      checkRollbackTarget(real, disk.format, { snapshot: s, reserved, leftover: disk.pendingRollback?.tempName });
      // As startRollback checks it, but before any member's rollback starts.
      if (disk.format === 'qcow2') inspectDiskImage(disk, real, this.engine.imageRoots);
      checkNotInUse(real, o.force === true);
      checkNotBacking(this.i.catalog, disk, real, this.engine.imageRoots, o.force === true);
    }
    const jobs = members.map((s) => this.engine.startRollback(s.diskId, s.id, o.force === true ? { force: true } : {}));
    this.i.log.info({ groupId: g.id, jobs: jobs.map((j) => j.id) }, 'group rollback started');
    return { groupId: g.id, jobs };
  }

  /** Deletes every member and the group in one transaction, holding every member disk's lock. */
  delete(ref: string): Group {
    const g = this.resolve(ref);
    if (g.status === 'creating') throw groupNotAvailable(g);
    const members = this.membersOf(g);
    for (const s of members) {
      if (this.i.isPinned(s.id)) throw this.i.snapshotBusy(s, `member ${s.id} (${s.name}) of group ${g.name}`, 'delete the group');
      const clone = this.i.cloneOn(s.id);
      if (clone) {
        // Snapshotting the clone moves its base off the member; removing it may itself be refused
        // (its own snapshots may be members of this group).
        throw new BlocksnapError('SnapshotHasClones',
          `member ${s.id} of group ${g.name} is the base of copy-on-write disk ${clone.name}; snapshot that disk (which moves its base to the new snapshot), then delete the group`,
          { snapshotId: s.id, diskId: clone.id });
      }
    }
    // A running rollback keeps its journal set too: its disk is busy (DiskBusy), not interrupted.
    const releases = this.lockAll(members.map((s) => s.diskId), `delete:${g.id}`);
    try {
      for (const s of members) {
        if (this.i.catalog.getDisk(s.diskId)?.pendingRollback?.snapshotId === s.id) {
          throw new BlocksnapError('SnapshotBusy', `member ${s.id} of group ${g.name} is the target of an interrupted rollback; rerun the rollback (or abandon it with rollback --abandon) first`);
        }
      }
      this.i.model.txn(() => {
        for (const s of members) removeSnapshot(this.i.catalog, this.i.catalog.getSnapshot(s.id)!);
        this.i.model.deleteGroup(g.id);
      });
    } finally {
      for (const r of releases) r();
    }
    this.i.log.info({ groupId: g.id, snapshots: members.length }, 'group deleted');
    this.i.afterDelete();
    return g;
  }

  /**
   * At start, before any job: a group a crash left `creating` loses its members and reads `error`
   * (members that must stay, see mustStay, stay in it). Then what a catalog written before members
   * were listed in their own commit can hold: a failed group's unlisted members are removed as its
   * error says they were, and members of a group that was deleted leave it (removed, or kept as
   * plain snapshots when they must stay). Returns the ids of the groups that were `creating`.
   */
  recover(): string[] {
    const groups = this.i.model.allGroups();
    const stale = groups.filter((g) => g.status === 'creating');
    const named = new Map<string, SnapshotRecord[]>();
    for (const s of this.i.catalog.allSnapshots()) {
      if (!s.groupId) continue;
      const list = named.get(s.groupId);
      if (list) list.push(s); else named.set(s.groupId, [s]);
    }
    const unlisted = (g: GroupRecord): SnapshotRecord[] => (named.get(g.id) ?? []).filter((s) => !g.snapshotIds.includes(s.id));
    const failed = groups.filter((g) => g.status === 'error' && unlisted(g).length > 0);
    const orphans = [...named.entries()].filter(([id]) => this.i.model.getGroup(id) === undefined).flatMap(([, list]) => list);
    if (stale.length === 0 && failed.length === 0 && orphans.length === 0) return [];
    this.i.model.txn(() => {
      for (const g of stale) {
        const members = [...listedMembers(this.i.catalog, g), ...unlisted(g)];
        const { kept, released } = this.dissolve(members, (s) => this.mustStay(s));
        const message = 'the daemon stopped while this group was being created; its partial members were removed' +
          (kept.length > 0 ? ` except ${kept.join(', ')}, still in use (delete the group once they are free)` : '') + releasedNote(released);
        this.i.model.putGroup({ ...g, status: 'error', snapshotIds: kept, completedAt: this.i.now().toISOString(), error: { code: 'Interrupted', message } });
      }
      for (const g of failed) {
        const { kept } = this.dissolve(unlisted(g), (s) => this.mustStay(s));
        this.i.model.putGroup({ ...g, snapshotIds: [...g.snapshotIds, ...kept] });
      }
      const { kept } = this.dissolve(orphans, (s) => this.mustStay(s));
      for (const id of kept) this.i.catalog.putSnapshot({ ...this.i.catalog.getSnapshot(id)!, groupId: null });
    });
    if (failed.length > 0 || orphans.length > 0) {
      this.i.log.warn({ groups: failed.map((g) => g.id), unlistedMembers: failed.flatMap((g) => unlisted(g).map((s) => s.id)), membersOfDeletedGroups: orphans.map((s) => s.id) },
        'members their failed or deleted group did not list were removed (or kept as plain snapshots while in use)');
    }
    this.i.afterDelete();
    return stale.map((g) => g.id);
  }

  /**
   * A member that finished while the group was still being created can be put to work before
   * the group fails: read by a clone or an export (pinned), made the base of another disk's
   * copy-on-write clone, or made the target of a rollback that was then interrupted. Removing it
   * with the failed group would let the sweeper unlink blocks those still read, or leave the
   * disk's rollback journal naming a snapshot that no longer exists; it stays in the error group
   * instead, for `group delete` (which refuses while it is in use).
   */
  private mustStay(s: SnapshotRecord): boolean {
    return this.i.isPinned(s.id) || this.i.cloneOn(s.id, s.diskId) !== undefined || this.i.catalog.getDisk(s.diskId)?.pendingRollback?.snapshotId === s.id;
  }

  /**
   * Ends a failed group's members, in the caller's transaction. A member of a copy-on-write disk
   * became that disk's base when it committed: the disk reads its blocks, so it cannot be
   * removed, and `group delete` could never take it while the disk exists. It leaves the group,
   * kept as a plain snapshot of its disk (deleted like any other once the disk has a newer one).
   * Of the others, those `stay` keeps remain in the group; the rest are removed.
   */
  private dissolve(members: SnapshotRecord[], stay: (s: SnapshotRecord) => boolean): { kept: string[]; released: SnapshotRecord[] } {
    const kept: string[] = [];
    const released: SnapshotRecord[] = [];
    for (const s of members) {
      if (this.i.catalog.getDisk(s.diskId)?.cow?.baseSnapshotId === s.id) {
        this.i.catalog.putSnapshot({ ...s, groupId: null });
        released.push(s);
      } else if (stay(s)) {
        kept.push(s.id);
      } else {
        removeSnapshot(this.i.catalog, s);
      }
    }
    return { kept, released };
  }

  // ---------------------------------------------------------------- internals

  /** The start checks of a manual snapshot, for every disk before any member starts. */
  private checkSnapshotable(d: Disk, snaps: SnapshotRecord[]): void {
    if (d.pendingRollback) {
      throw new BlocksnapError('RollbackIncomplete', `a rollback of disk ${d.name} did not finish; run it again (or abandon it: blocksnap rollback ${d.name} --abandon) before taking a group snapshot`, { diskId: d.id });
    }
    quotaEvictions(d.name, snaps, 'manual', this.i.quota(), () => false, d.cow?.baseSnapshotId ?? null);
    this.engine.checkSnapshotSize(d.id);
  }

  /**
   * Waits for every member. The first member that does not succeed cancels the others; then the
   * members that exist are removed and the group reads `error` with that member's error. A member
   * the shared instant released because another left before it is not that member: the leaver's
   * own error names the cause.
   */
  private async settle(g: GroupRecord, jobs: Job[], instant: SharedInstant | undefined): Promise<Group> {
    const failures: Array<{ code: string; message: string; released: boolean }> = [];
    await Promise.all(jobs.map(async (j) => {
      const end = await this.engine.waitJob(j.id);
      if (end.state === 'succeeded') return;
      const disk = j.diskId === null ? undefined : this.i.catalog.getDisk(j.diskId);
      const released = j.diskId !== null && instant?.releasedBy(j.diskId) === true;
      failures.push({ code: end.error?.code ?? 'Internal', message: `member snapshot of disk ${disk ? `${disk.name} (${j.diskId})` : j.diskId}: ${end.error?.message ?? end.state}`, released });
      if (failures.length === 1) for (const other of jobs) if (other.id !== j.id) this.engine.cancelJob(other.id);
    }));
    const first = failures.find((f) => !f.released) ?? failures[0];
    if (first === undefined) {
      const done: GroupRecord = { ...this.i.model.getGroup(g.id)!, status: 'available', completedAt: this.i.now().toISOString() };
      this.i.model.txn(() => this.i.model.putGroup(done));
      this.i.log.info({ groupId: g.id, ...(instant ? { instantPauseMs: instant.pauseMs } : {}) }, 'group available');
      return done;
    }
    return this.fail(g.id, { code: first.code, message: first.message });
  }

  /**
   * Ends whatever members exist (dissolve: those that must stay stay, a copy-on-write disk's base
   * leaves the group) and records the group's error.
   */
  private fail(groupId: string, error: { code: string; message: string }): Group {
    const g = this.i.model.getGroup(groupId)!;
    const members = this.membersOf(g);
    let stay = (s: SnapshotRecord): boolean => this.mustStay(s);
    let releases: Array<() => void> = [];
    try {
      releases = this.lockAll(members.map((s) => s.diskId), `group:${g.id}`);
    } catch {
      // A disk got busy the moment its member ended: leave the members to `group delete`.
      stay = () => true;
    }
    let failed: GroupRecord = g;
    let released: SnapshotRecord[] = [];
    try {
      this.i.model.txn(() => {
        const ended = this.dissolve(members, stay);
        released = ended.released;
        failed = { ...g, status: 'error', snapshotIds: ended.kept, completedAt: this.i.now().toISOString(), error: { ...error, message: error.message + releasedNote(ended.released) } };
        this.i.model.putGroup(failed);
      });
    } finally {
      for (const r of releases) r();
    }
    this.i.afterDelete();
    this.i.log.warn({ groupId: g.id, code: error.code, keptMembers: failed.snapshotIds.length, releasedMembers: released.map((s) => s.id) }, 'group failed; its partial members were removed');
    return failed;
  }

  /** Takes every disk's lock or none (DiskBusy names the first busy disk). */
  private lockAll(diskIds: string[], holder: string): Array<() => void> {
    const releases: Array<() => void> = [];
    try {
      for (const id of new Set(diskIds)) releases.push(this.i.diskLocks.acquire(id, holder));
    } catch (err) {
      for (const r of releases) r();
      throw err;
    }
    return releases;
  }

  /**
   * The group's members that exist: those it lists, and any snapshot of its disks naming it that
   * it does not list (left by a crash under a version that listed members after their commit).
   */
  private membersOf(g: GroupRecord): SnapshotRecord[] {
    const listed = listedMembers(this.i.catalog, g);
    const unlisted = g.diskIds.flatMap((id) => this.i.catalog.snapshotsOfDisk(id)).filter((s) => s.groupId === g.id && !g.snapshotIds.includes(s.id));
    return [...listed, ...unlisted];
  }

  private member(g: GroupRecord, id: string): SnapshotRecord {
    const s = this.i.catalog.getSnapshot(id);
    if (!s) throw new BlocksnapError('SnapshotNotFound', `member ${id} of group ${g.name} no longer exists`);
    return s;
  }

  private resolve(ref: string): GroupRecord {
    return resolveIdOrName(ref, { prefix: 'g', noun: 'group', notFound: 'GroupNotFound' },
      (id) => this.i.model.getGroup(id), () => this.i.model.allGroups());
  }
}

function listedMembers(catalog: EngineInternals['catalog'], g: GroupRecord): SnapshotRecord[] {
  return g.snapshotIds.map((id) => catalog.getSnapshot(id)).filter((s): s is SnapshotRecord => s !== undefined);
}

/** What a failed group's error adds for the members dissolve released from it. */
function releasedNote(released: SnapshotRecord[]): string {
  if (released.length === 0) return '';
  const ids = released.map((s) => s.id).join(', ');
  return released.length === 1
    ? `; ${ids} left the group and is kept as a plain snapshot of its copy-on-write disk, which reads it as its base (delete it like any snapshot once the disk has a newer one)`
    : `; ${ids} left the group and are kept as plain snapshots of their copy-on-write disks, which read them as their bases (delete them like any snapshot once their disk has a newer one)`;
}

function groupNotAvailable(g: GroupRecord): BlocksnapError {
  return new BlocksnapError('GroupNotAvailable',
    `group ${g.name} is ${g.status}${g.error ? ` (${g.error.code}: ${g.error.message})` : ''}`, { groupId: g.id });
}
