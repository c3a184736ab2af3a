/**
 * The one registry of error codes. A code is part of the outside contract: scripts match on it,
 * so codes are never renamed or reused. Every code here is documented in docs/errors.md, and a
 * test fails when the two disagree.
 */
import { reportFdExhaustion } from './fd-exhaustion';

export const ERROR_CODES = {
  // usage and validation
  InvalidArgument: 'An argument has the wrong type or an invalid value.',
  InvalidName: 'A name is empty, too long, uses characters outside [A-Za-z0-9._-], or a manual snapshot name starts with "auto".',
  NameTaken: 'Another object of the same kind already has this name (disk names are global, snapshot names are per disk).',
  // objects
  DiskNotFound: 'No disk has this id or name.',
  SnapshotNotFound: 'No snapshot has this id or name.',
  JobNotFound: 'No job has this id.',
  AmbiguousName: 'The name matches more than one object; use the id.',
  DiskHasSnapshots: 'The disk still has snapshots; delete them first or pass --delete-snapshots.',
  DiskHasWrites: 'The copy-on-write disk holds writes no snapshot has; snapshot it first, or pass --discard-writes to remove it with them.',
  DiskAlreadyRegistered: 'This image file is already registered as a disk.',
  SnapshotNotAvailable: 'The snapshot is not available (it is still being created or failed).',
  SnapshotBusy: 'The snapshot is being read by a running job (a clone, a stream export, a replication) or served as an NBD export and cannot be deleted now.',
  SnapshotQuotaExceeded: 'The disk already has as many manual snapshots as its quota allows; delete one first.',
  SnapshotInGroup: 'The snapshot belongs to a snapshot group and is deleted only with its group.',
  SnapshotHasClones: 'The snapshot is the base of a copy-on-write disk (clone --cow) and cannot be deleted while that disk exists.',
  NotCowDisk: 'The operation needs a copy-on-write disk (made by clone --cow), and this disk is an image file.',
  PolicyNotFound: 'No snapshot policy has this id or name.',
  GroupNotFound: 'No snapshot group has this id or name.',
  DiskHasPolicy: 'The disk is already bound to another snapshot policy; a disk has at most one.',
  DiskNotBound: 'The disk is not bound to this snapshot policy.',
  GroupNotAvailable: 'The snapshot group is not available (it is still being created or failed).',
  // images and paths
  ImageNotFound: 'The image file does not exist.',
  NotAnImage: 'The path is not a regular file (a directory, device, socket, ...) or has an unsupported format.',
  UnsupportedFormat: 'The image format (or a feature of it) is not supported by this build.',
  PathNotAllowed: 'The path resolves outside every configured image root, or into the daemon\'s data directory.',
  FileExists: 'The target file already exists; blocksnap never overwrites a file when cloning.',
  PermissionDenied: 'The operating system refused access to the file.',
  ImageTooLarge: 'The image\'s virtual size has more blocks than a snapshot may hold (2^27, 512 TiB with 4 MiB blocks).',
  ImageCorrupt: 'The image metadata is malformed (a qcow2 header, table or cluster offset outside the file or the format), or QEMU marked the image corrupt.',
  ImageHasInternalSnapshots: 'The qcow2 image holds internal snapshots (qemu-img snapshot -l) that a rollback would drop; it is refused.',
  ImageHasBitmaps: 'The qcow2 image holds persistent dirty bitmaps (qemu-img info lists them) that a rollback would drop; it is refused.',
  ImageHasHardLinks: 'The qcow2 image file has other names (hard links); a rollback renames a new image over one name and would leave the others on the old content, so it is refused.',
  ImageIsBackingFile: 'The image is the backing file of other registered disks (qcow2 overlays over it); rolling it back would change what their guests see, so it is refused unless forced.',
  ImageBindMounted: 'The qcow2 image file is a mount point, or is bind-mounted on another path; a rollback renames a new image over its name, which the mount would not follow (or the kernel refuses), so it is refused.',
  ImageReplaced: 'The image file at the disk\'s path was replaced (moved, renamed over) while a rollback wrote it, so the file the path names now was not rolled back; rerun the rollback, or abandon it. Also: a file a client\'s rights were checked on was replaced before the job opened it, and was neither read nor written.',
  ImageResized: 'The image changed size while a snapshot read it; take the snapshot again.',
  ImageChanged: 'The image was written while a snapshot read it, and the qcow2 tables the scan followed changed under it; take the snapshot again.',
  BackingFileAmbiguous: 'The qcow2 image, given through a symlink in another directory, has a relative backing file name that names another file from there than from the real path (QEMU resolves it from the path it opens); register the image by its real path or give it an absolute backing name.',
  DiskInUse: 'A QEMU process (a running VM, qemu-nbd, qemu-img) holds the image open, or NBD clients are connected to a copy-on-write disk; stop them, or pass --force.',
  // jobs and locking
  DiskBusy: 'Another job is running on this disk, or on another disk whose image is the same file (`details.sameFileAs`); one job per disk and per file at a time.',
  RollbackIncomplete: 'An earlier rollback of this disk did not finish; rerun the rollback to finish it first, or abandon it (rollback --abandon).',
  RollbackNotPending: 'The disk has no unfinished rollback (to that snapshot) to abandon.',
  Cancelled: 'The job was cancelled.',
  Interrupted: 'The job was interrupted by a daemon crash or restart before it finished.',
  ShuttingDown: 'The daemon is shutting down and accepts no new jobs.',
  // store and data integrity
  DigestMismatch: 'A stored block does not match its digest: the block store is corrupt. The damaged block was not written anywhere.',
  BlockMissing: 'A block referenced by a snapshot is missing from the block store.',
  BlockCorrupt: 'A block file has a bad header (wrong magic, version, flags or length), or is not a regular file.',
  NoSpace: 'The filesystem is full (ENOSPC).',
  IOError: 'An I/O error from the operating system (the message names the call and errno).',
  CatalogVersion: 'The catalog was written by a different schema version that this build cannot open.',
  CatalogMissing: 'The catalog is missing (or empty) beside a block store that holds blocks: the daemon does not start a new, empty catalog over them unless told to (--new-catalog).',
  CatalogDamaged: 'The catalog file is damaged (truncated or overwritten): the daemon does not start on it, nor over a new one.',
  CatalogMismatch: 'The catalog is not known to be the block store\'s (another data dir\'s, older than the store, or new beside its blocks): deleting blocks is held until the right catalog is back or this one is accepted (store accept-catalog).',
  DataDirLocked: 'Another blocksnap daemon already uses this data directory.',
  // remotes, replication and streams
  RemoteNotFound: 'No remote has this name.',
  RemoteExists: 'A remote with this name is already configured.',
  RemoteInUse: 'A policy replicates to this remote; change or delete the policy first.',
  RemoteUnreachable: 'The remote endpoint did not answer (connection refused, DNS failure, timeout) after retries.',
  RemoteAuthFailed: 'The remote refused the credentials (wrong access key or secret, or no permission on the bucket).',
  RemoteBucketMissing: 'The remote bucket does not exist.',
  RemoteError: 'The remote answered with an unexpected error; the message has its status and code.',
  RemoteCorrupt: 'An object read from the remote is damaged: a manifest fails its checksum or a block does not match its digest.',
  RemoteBusy: 'Another host holds a conflicting lease on the remote (a gc, or replications while gc waits); retry later.',
  CredentialsInsecure: 'The credentials file is readable or writable by group or others (it must be mode 0600 or stricter), or is not a regular file, or its directory is another user\'s or writable by others.',
  CredentialsInvalid: 'The credentials file cannot be read or does not hold an access key id and a secret access key.',
  NotAuthorized: 'The client\'s user (as the kernel reports it on the socket) may not make this call, or may not use a path it named: adding or removing a remote, deleting a snapshot from one and a remote\'s gc are kept for root and the daemon\'s own user, and every path a client who is neither names is used only as far as that client\'s own user could.',
  SnapshotExists: 'A snapshot with this id already exists in the local catalog (it was imported or created here before), and the import cannot mend it: its stream or remote manifest holds other content under that id (another block map or size), names another disk than the snapshot\'s, or the local snapshot is not available.',
  StreamCorrupt: 'A snapshot stream is damaged or truncated: a checksum, a block digest or the framing does not match. Nothing was committed.',
  BaseMissing: 'The stream or remote snapshot is incremental and its base snapshot is not in the local catalog (or has different content).',
  BlockSizeMismatch: 'The stream or remote snapshot has blocks of another size than this store; only a store created with that block size can import it.',
  StreamClosed: 'A snapshot stream through the socket ended early: the client disconnected, or the job writing or reading it ended. Nothing was committed.',
  StreamStalled: 'The client of an import stream through the socket sent nothing for 30 s while the import waited for its bytes; the import failed and nothing was committed.',
  // NBD exports
  NbdNotEnabled: 'The daemon serves no NBD socket (it was started without --nbd-socket), so nothing can be exported.',
  ExportNotFound: 'No NBD export has this name.',
  DiskExported: 'The disk is served by a writable NBD export; stop the export first (a disk has at most one writable export).',
  // protocol and daemon
  ProtocolError: 'A frame could not be decoded or is not a valid request; the connection may be closed.',
  FrameTooLarge: 'A frame is larger than the configured limit; the connection is closed.',
  UnknownMethod: 'The request names a method the daemon does not have.',
  VersionMismatch: 'Client and daemon speak incompatible protocol versions.',
  DaemonUnavailable: 'No daemon answers on the socket.',
  SocketInUse: 'A live daemon already listens on this socket path, or something other than a socket (a directory, a symlink, a file) is there.',
  UntrustedPath: 'The data directory, a file or directory one of its symbolic links leads to, or the directory of a socket is owned by a user other than root and the one the daemon runs as, or others than its owner may write to it (group- or world-writable; the directory of a socket may be if it has the sticky bit, like /tmp); the daemon refuses to start.',
  Internal: 'An unexpected internal error; the message has details. Please report it.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

/** The project's error class: a stable `code`, a human message, and optional structured details. */
export class BlocksnapError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'BlocksnapError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Wraps anything thrown into a BlocksnapError, keeping a known code and the original stack. */
export function toBlocksnapError(err: unknown): BlocksnapError {
  if (err instanceof BlocksnapError) return err;
  if (err instanceof Error) {
    // Said here, where Node's errno code is still on the error: EMFILE becomes an IOError below.
    reportFdExhaustion(err);
    const code = (err as { code?: unknown }).code;
    const mapped = isErrorCode(code) ? code : errnoToCode(code);
    const wrapped = new BlocksnapError(mapped, err.message);
    wrapped.stack = err.stack;
    return wrapped;
  }
  return new BlocksnapError('Internal', String(err));
}

/** Maps a Node.js errno code ('ENOENT', ...) to the registry. */
export function errnoToCode(code: unknown): ErrorCode {
  switch (code) {
    case 'ENOENT': return 'ImageNotFound';
    case 'EEXIST': return 'FileExists';
    case 'EACCES': case 'EPERM': return 'PermissionDenied';
    case 'ENOSPC': case 'EDQUOT': return 'NoSpace';
    case 'EISDIR': case 'ENOTDIR': return 'NotAnImage';
    case 'ENAMETOOLONG': return 'InvalidArgument'; // a client named a path the filesystem cannot hold
    case 'ELOOP': return 'PathNotAllowed'; // a symlink loop cannot be resolved, so it cannot be checked against the roots
    // What the system or a device refused, not a defect: a read-only filesystem (remounted so
    // after an error, as docs/errors.md says of the data dir), a file past the filesystem's size
    // limit, the process's or the system's open files used up, a device gone.
    case 'EIO': case 'EROFS': case 'EFBIG': case 'EMFILE': case 'ENFILE': case 'ENXIO': case 'ENODEV': return 'IOError';
    default: return 'Internal';
  }
}
