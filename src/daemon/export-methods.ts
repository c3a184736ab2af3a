/**
 * Wire methods of NBD exports (docs/protocol.md). Built by a factory that receives methods.ts's
 * `method`, like offsite-methods.ts, so the two modules do not import each other at run time.
 */
import { BlocksnapError } from '../errors';
import type { CallContext, Method } from './methods';
import { boolean, objectName, optional, string, type ParamsOf, type Shape } from './params';

type MethodFactory = <S extends Shape>(spec: { params: S; run(ctx: CallContext, params: ParamsOf<S>): unknown }) => Method;

export function exportMethods(method: MethodFactory): Record<string, Method> {
  return {
    'export.start': method({
      params: { snapshot: optional(string), disk: optional(string), writable: optional(boolean), name: optional(objectName) },
      run: (ctx, p) => {
        const o = p.name !== undefined ? { name: p.name } : {};
        // A snapshot is served read-only; a copy-on-write disk, writable.
        if (p.disk !== undefined && p.snapshot === undefined && p.writable === true) return ctx.engine.exports.startDisk(p.disk, o);
        if (p.snapshot !== undefined && p.disk === undefined && p.writable !== true) return ctx.engine.exports.start(p.snapshot, o);
        throw new BlocksnapError('InvalidArgument', 'export.start takes either snapshot (read-only) or disk with writable: true');
      },
    }),
    'export.list': method({ params: {}, run: (ctx) => ctx.engine.exports.list() }),
    'export.show': method({ params: { name: string }, run: (ctx, p) => ctx.engine.exports.get(p.name) }),
    'export.stop': method({ params: { name: string }, run: (ctx, p) => ctx.engine.exports.stop(p.name) }),
  };
}
