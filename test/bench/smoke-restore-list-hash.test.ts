/** The bench's sparse, rollback and clone, delete and list, and hash questions at scale 0.01 (smoke.ts). */
import t from 'tap';
import { smoke } from './smoke';

smoke(t, ['sparse', 'rollback-clone', 'delete-list', 'hash']);
