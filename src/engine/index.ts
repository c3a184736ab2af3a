export { Engine, type EngineOptions, type EngineLogger } from './engine';
export * from './types';
