/** The bench's full-snapshot question at scale 0.01 (smoke.ts). */
import t from 'tap';
import { smoke } from './smoke';

smoke(t, ['full']);
