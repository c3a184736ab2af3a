import { BlocksnapError } from '../../errors';

/** A whole-number option, checked before anything is sent (the daemon checks the range again). */
export function parseWholeNumber(option: string, value: string): number {
  if (!/^\d{1,15}$/.test(value)) throw new BlocksnapError('InvalidArgument', `${option} must be a whole number, not ${JSON.stringify(value)}`);
  return Number(value);
}
