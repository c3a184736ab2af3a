/**
 * Wire methods of the snapshot model: policies, snapshot groups and tags (docs/protocol.md). Built
 * by a factory that receives methods.ts's `method` and `settle`, like offsite-methods.ts.
 */
import type { Job } from '../engine/types';
import type { Policy, PolicySpec } from '../engine/policies';
import { KEEP_MAX, RETENTION_DAYS_MAX, type RetentionInput } from '../engine/retention';
import { nextDue } from '../scheduler/due-times';
import type { CallContext, Method } from './methods';
import { groupDiskList, integerList, stringList, stringMap } from './model-params';
import { boolean, integer, objectName, optional, string, text, type ParamsOf, type Shape } from './params';

type MethodFactory = <S extends Shape>(spec: { params: S; run(ctx: CallContext, params: ParamsOf<S>): unknown }) => Method;
type Settle = (ctx: CallContext, job: Job, wait: boolean | undefined) => Promise<Job>;

const wait = optional(boolean);

/** Policy fields shared by create and update (all optional here; create requires name and hours). */
const policyFields = {
  description: optional(text), weekdays: optional(integerList(1, 7)), timeZone: optional(string), enabled: optional(boolean),
  replicateTo: optional(text),
  retentionDays: optional(integer(-1, RETENTION_DAYS_MAX)), keepLast: optional(integer(0, KEEP_MAX)), keepHourly: optional(integer(0, KEEP_MAX)),
  keepDaily: optional(integer(0, KEEP_MAX)), keepWeekly: optional(integer(0, KEEP_MAX)), keepMonthly: optional(integer(0, KEEP_MAX)), keepYearly: optional(integer(0, KEEP_MAX)),
};

type PolicyParams = ParamsOf<typeof policyFields> & { name?: string; hours?: number[] };

/** The wire's flat policy params as a spec: retention is given only when some retention param is. */
function policySpec(p: PolicyParams): Partial<PolicySpec> {
  const spec: Partial<PolicySpec> = {};
  if (p.name !== undefined) spec.name = p.name;
  if (p.hours !== undefined) spec.hours = p.hours;
  if (p.description !== undefined) spec.description = p.description;
  if (p.weekdays !== undefined) spec.weekdays = p.weekdays;
  if (p.timeZone !== undefined) spec.timeZone = p.timeZone;
  if (p.enabled !== undefined) spec.enabled = p.enabled;
  if (p.replicateTo !== undefined) spec.replicateTo = p.replicateTo === '' ? null : p.replicateTo;
  const r: RetentionInput = {};
  if (p.retentionDays !== undefined) r.days = p.retentionDays;
  for (const k of ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const) if (p[k] !== undefined) r[k] = p[k];
  if (Object.keys(r).length > 0) spec.retention = r;
  return spec;
}

/** A policy as served: with the next time the scheduler will run it (null when disabled). */
function servedPolicy(p: Policy): Policy & { nextRunAt: string | null } {
  return { ...p, nextRunAt: p.enabled ? nextDue(p, new Date()).toISOString() : null };
}

export function modelMethods(method: MethodFactory, settle: Settle): Record<string, Method> {
  return {
    'snapshot.tag': method({ params: { snapshot: string, tags: stringMap }, run: (ctx, p) => ctx.engine.tagSnapshot(p.snapshot, p.tags) }),
    'snapshot.untag': method({ params: { snapshot: string, keys: stringList }, run: (ctx, p) => ctx.engine.untagSnapshot(p.snapshot, p.keys) }),

    'policy.create': method({
      params: { name: objectName, hours: integerList(0, 23), ...policyFields },
      run: (ctx, p) => servedPolicy(ctx.engine.policies.create(policySpec(p) as PolicySpec)),
    }),
    'policy.list': method({ params: {}, run: (ctx) => ctx.engine.policies.list().map(servedPolicy) }),
    'policy.show': method({ params: { policy: string }, run: (ctx, p) => servedPolicy(ctx.engine.policies.get(p.policy)) }),
    'policy.update': method({
      params: { policy: string, name: optional(objectName), hours: optional(integerList(0, 23)), ...policyFields },
      run: (ctx, p) => servedPolicy(ctx.engine.policies.update(p.policy, policySpec(p))),
    }),
    'policy.delete': method({ params: { policy: string }, run: (ctx, p) => ({ ...ctx.engine.policies.delete(p.policy), nextRunAt: null }) }),
    'policy.bind': method({ params: { policy: string, disks: stringList }, run: (ctx, p) => servedPolicy(ctx.engine.policies.bind(p.policy, p.disks)) }),
    'policy.unbind': method({ params: { policy: string, disks: stringList }, run: (ctx, p) => servedPolicy(ctx.engine.policies.unbind(p.policy, p.disks)) }),
    'policy.run': method({ params: { policy: string }, run: (ctx, p) => ctx.engine.policies.run(p.policy, undefined, { started: (j) => ctx.announce?.(j) }) }),

    'group.create': method({
      params: { disks: groupDiskList, name: optional(objectName), description: optional(text), wait },
      run: (ctx, p) => {
        const o: { disks: string[]; name?: string; description?: string } = { disks: p.disks };
        if (p.name !== undefined) o.name = p.name;
        if (p.description !== undefined) o.description = p.description;
        const { group, jobs, done } = ctx.engine.groups.create(o);
        if (p.wait !== true) return group;
        for (const j of jobs) ctx.announce?.(j);
        return done;
      },
    }),
    'group.list': method({ params: {}, run: (ctx) => ctx.engine.groups.list() }),
    'group.show': method({ params: { group: string }, run: (ctx, p) => ctx.engine.groups.get(p.group) }),
    'group.rollback': method({
      params: { group: string, force: optional(boolean), wait },
      run: async (ctx, p) => {
        const r = ctx.engine.groups.rollback(p.group, p.force === true ? { force: true } : {});
        if (p.wait === true) for (const j of r.jobs) ctx.announce?.(j);
        return { ...r, jobs: await Promise.all(r.jobs.map((j) => settle(ctx, j, p.wait))) };
      },
    }),
    'group.delete': method({ params: { group: string }, run: (ctx, p) => ctx.engine.groups.delete(p.group) }),
  };
}
