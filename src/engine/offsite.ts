/**
 * Off-host copies: replication to S3-compatible remotes (replication.ts), the way back from them
 * (remote-restore.ts), their gc (remote-gc.ts) and verify (remote-verify.ts), and host-to-host snapshot streams (streams.ts).
 * One object so that the engine has one hook for all of them.
 */
import type { OffsiteInternals } from './offsite-internals';
import { RemoteGc } from './remote-gc';
import { RemoteRestore } from './remote-restore';
import { RemoteVerify } from './remote-verify';
import { Replication, type ReplicationOptions } from './replication';
import { SnapshotStreams } from './streams';

export class Offsite {
  readonly replication: Replication;
  readonly remoteRestore: RemoteRestore;
  readonly remoteGc: RemoteGc;
  readonly remoteVerify: RemoteVerify;
  readonly streams: SnapshotStreams;

  constructor(x: OffsiteInternals, o: ReplicationOptions = {}) {
    this.replication = new Replication(x, o);
    this.remoteRestore = new RemoteRestore(x, this.replication);
    this.remoteGc = new RemoteGc(x, this.replication);
    this.remoteVerify = new RemoteVerify(x, this.replication);
    this.streams = new SnapshotStreams(x);
  }
}
