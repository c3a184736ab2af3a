/**
 * Exit statuses of the CLI. Usage errors (the command line itself is wrong) exit 2, as with most
 * Unix tools, whether the CLI or the daemon noticed; every other error exits 1. docs/errors.md
 * lists the status of each code and a test keeps the two in step.
 */
import type { ErrorCode } from '../errors';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  /** The user interrupted a waiting command (128 + SIGINT). */
  interrupted: 130,
} as const;

const USAGE_CODES: ReadonlySet<string> = new Set<ErrorCode>(['InvalidArgument', 'InvalidName']);

export function exitStatusFor(code: string): number {
  return USAGE_CODES.has(code) ? EXIT.usage : EXIT.failed;
}
