import { BlocksnapError } from '../../errors';

/**
 * A whole-number option, checked before anything is sent. The range is the daemon's own, checked
 * here too so that the message names the option the user typed rather than the protocol param.
 */
export function parseWholeNumber(option: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d{1,15}$/.test(value) || Number(value) < min || Number(value) > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `of ${min} or more` : `from ${min} to ${max}`;
    throw new BlocksnapError('InvalidArgument', `${option} must be a whole number ${range}, not ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** --concurrency of replicate, restore and import: transfers in flight (docs/protocol.md). */
export function parseConcurrency(value: string): number {
  return parseWholeNumber('--concurrency', value, 1, 64);
}

/** --grace of remote gc: at most ten years, as the daemon accepts. */
export function parseGraceSeconds(value: string): number {
  return parseWholeNumber('--grace', value, 0, 10 * 365 * 86_400);
}
