/** Library entry: the engine API the daemon (and embedders) call, and the error registry. */
export * from './engine';
export { BlocksnapError, ERROR_CODES, type ErrorCode } from './errors';
