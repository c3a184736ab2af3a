/**
 * Where results and errors go. With --json: exactly one JSON value on stdout, errors included
 * ({"error":{"code","message"}}), so a script reads one thing from one place. Without: human text
 * on stdout, errors as "blocksnap: message" on stderr.
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import { exitStatusFor } from './exit-status';
import { printable, terminalSafe } from './format';

export interface Output {
  readonly json: boolean;
  /** Prints a command's result: `value` as JSON, or `human(value)` as text. */
  result<T>(value: T, human: (value: T) => string): void;
  /** A side note for humans (stderr); silent with --json. */
  note(text: string): void;
}

/** `to` is stdout, except for a command whose stdout carries data (`snapshot export -o -`). */
export function createOutput(json: boolean, to: NodeJS.WritableStream = process.stdout): Output {
  return {
    json,
    result(value, human) {
      if (json) to.write(`${JSON.stringify(value, null, 2)}\n`);
      else {
        const text = terminalSafe(human(value));
        if (text !== '') to.write(text.endsWith('\n') ? text : `${text}\n`);
      }
    },
    note(text) {
      if (!json) process.stderr.write(`${terminalSafe(text)}\n`);
    },
  };
}

/** Prints an error in the mode's shape and returns the exit status it maps to. */
export function reportError(err: unknown, json: boolean, to: NodeJS.WritableStream = process.stdout): number {
  const e = toBlocksnapError(err);
  if (json) {
    to.write(`${JSON.stringify({ error: { code: e.code, message: e.message } })}\n`);
  } else {
    process.stderr.write(`blocksnap: ${printable(e.message)}${e.code === 'Internal' && !(err instanceof BlocksnapError) && e.stack ? `\n${e.stack}` : ''} [${e.code}]\n`);
  }
  return exitStatusFor(e.code);
}
