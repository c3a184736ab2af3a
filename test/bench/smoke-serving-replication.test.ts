/** The bench's served, NBD and replication questions at scale 0.01 (smoke.ts). */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { smoke } from './smoke';

// As in the bench's default run: replication needs Ceph's radosgw, which .ci/run installs.
const ceph = spawnSync('sh', ['-c', 'command -v radosgw'], { stdio: 'ignore' }).status === 0;
smoke(t, ceph ? ['served', 'nbd', 'replicate'] : ['served', 'nbd']);
if (!ceph) t.pass('replicate: not run', { skip: 'Ceph (radosgw) is not installed' });
