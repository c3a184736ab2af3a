/**
 * The tap run's `after` program (package.json): stops the shared Ceph the run's files left up
 * for each other (fixture.ts), unless another run still uses it.
 */
import { stopUnusedCeph } from './fixture';

stopUnusedCeph();
