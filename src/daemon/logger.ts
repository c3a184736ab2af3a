/**
 * Structured logs (pino, one JSON object per line) on stderr, where service managers collect them.
 * Writes are synchronous so the last lines before an exit are never lost.
 */
import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

export function createLogger(level: LogLevel, destinationFd = 2): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: destinationFd, sync: true }),
  );
}
