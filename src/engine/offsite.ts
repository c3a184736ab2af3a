/**
 * Off-host copies: replication to S3-compatible remotes (replication.ts) and host-to-host
 * snapshot streams (streams.ts). One object so that the engine has one hook for both.
 */
import type { OffsiteInternals } from './offsite-internals';
import { Replication, type ReplicationOptions } from './replication';
import { SnapshotStreams } from './streams';

export class Offsite {
  readonly replication: Replication;
  readonly streams: SnapshotStreams;

  constructor(x: OffsiteInternals, o: ReplicationOptions = {}) {
    this.replication = new Replication(x, o);
    this.streams = new SnapshotStreams(x);
  }
}
