/**
 * Wire methods of NBD exports (docs/protocol.md). Built by a factory that receives methods.ts's
 * `method`, like offsite-methods.ts, so the two modules do not import each other at run time.
 */
import type { CallContext, Method } from './methods';
import { optional, string, type ParamsOf, type Shape } from './params';

type MethodFactory = <S extends Shape>(spec: { params: S; run(ctx: CallContext, params: ParamsOf<S>): unknown }) => Method;

export function exportMethods(method: MethodFactory): Record<string, Method> {
  return {
    'export.start': method({
      params: { snapshot: string, name: optional(string) },
      run: (ctx, p) => ctx.engine.exports.start(p.snapshot, p.name !== undefined ? { name: p.name } : {}),
    }),
    'export.list': method({ params: {}, run: (ctx) => ctx.engine.exports.list() }),
    'export.show': method({ params: { name: string }, run: (ctx, p) => ctx.engine.exports.get(p.name) }),
    'export.stop': method({ params: { name: string }, run: (ctx, p) => ctx.engine.exports.stop(p.name) }),
  };
}
