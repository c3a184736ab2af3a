import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Remote, RemoteCheck, RemoteGcResult, RemoteSnapshotEntry, RemoteVerifyResult } from '../../engine/offsite-types';
import { clientOptions, examples, jobOptions, runJob, withClient, type ClientFlags, type JobFlags } from '../context';
import { EXIT } from '../exit-status';
import { remoteCheckView, remoteDetails, remoteGcView, remoteSnapshotTable, remoteTable, remoteVerifyLeftDamage, remoteVerifyView } from '../offsite-views';
import { validateBucket, validateEndpoint, validatePrefix, validateRegion, validateRemoteName } from '../../remote/config';
import { parseConcurrency, parseGraceSeconds } from './numbers';

export function registerRemote(program: Command): void {
  const remote = program.command('remote').description('S3-compatible object stores that hold off-host copies of snapshots');

  clientOptions(remote.command('add').argument('<name>', 'name of the remote: 1-64 of A-Z a-z 0-9 . _ -'))
    .description('configure a remote (an existing bucket on S3, Ceph radosgw, MinIO, Garage, ...)')
    .requiredOption('--endpoint <url>', 'S3 endpoint, scheme://host[:port]')
    .requiredOption('--bucket <bucket>', 'bucket name (it must exist)')
    .option('--prefix <prefix>', 'key prefix inside the bucket (several stores may share a bucket)')
    .option('--region <region>', 'signing region (default us-east-1)')
    .requiredOption('--credentials <file>', 'file with aws_access_key_id and aws_secret_access_key, mode 0600; read by the daemon, never sent')
    .addHelpText('after', `
The credentials file is read by the daemon each time it connects, so the daemon's user must be able
to read it; it must be a regular file owned by the daemon's user or root, not readable by group or
others, in a directory of theirs that no one else may write (a sticky one such as /tmp passes). Only root or the daemon's own user may add a remote
(other users of the socket get NotAuthorized): the daemon reads the file with its own rights.
Every user of the socket may then use the remote. Syntax as ~/.aws/credentials:
  aws_access_key_id = AKIA...
  aws_secret_access_key = ...
${examples([
  'blocksnap remote add offsite --endpoint http://rgw.example:7480 --bucket vm-backups --credentials /etc/blocksnap/offsite.cred',
  'blocksnap remote add s3 --endpoint https://s3.eu-central-1.amazonaws.com --region eu-central-1 --bucket example-vm-backups --prefix host1 --credentials /root/.s3cred',
])}`)
    .action(async (name: string, flags: ClientFlags & { endpoint: string; bucket: string; prefix?: string; region?: string; credentials: string }) => {
      // The daemon's own rules, checked before connecting: a mistyped setting is reported as a
      // usage error even where no daemon answers.
      validateRemoteName(name);
      validateEndpoint(flags.endpoint);
      validateBucket(flags.bucket);
      validatePrefix(flags.prefix);
      validateRegion(flags.region);
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { name, endpoint: flags.endpoint, bucket: flags.bucket, credentialsFile: resolve(flags.credentials) };
        if (flags.prefix !== undefined) params.prefix = flags.prefix;
        if (flags.region !== undefined) params.region = flags.region;
        out.result(await client.call<Remote>('remote.add', params), (r) => `Added remote ${r.name}.\n${remoteDetails(r)}\nCheck it with: blocksnap remote check ${r.name}`);
      });
    });

  clientOptions(remote.command('list'))
    .alias('ls')
    .description('list the configured remotes')
    .addHelpText('after', examples(['blocksnap remote list --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Remote[]>('remote.list'), remoteTable));
    });

  clientOptions(remote.command('show').argument('<remote>', 'remote name'))
    .description('show one remote (no secrets: only the credentials file path is stored)')
    .addHelpText('after', examples(['blocksnap remote show offsite']))
    .action(async (name: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Remote>('remote.show', { remote: name }), remoteDetails));
    });

  clientOptions(remote.command('remove').argument('<remote>', 'remote name'))
    .alias('rm')
    .description('forget a remote; the bucket and its contents are not touched; refused (RemoteInUse) while a policy replicates to it')
    .addHelpText('after', examples(['blocksnap remote remove offsite']))
    .action(async (name: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Remote>('remote.remove', { remote: name }), (r) => `Removed remote ${r.name}.`));
    });

  clientOptions(remote.command('check').argument('<remote>', 'remote name'))
    .description('check that the remote answers, accepts the credentials and lets us write to the bucket')
    .addHelpText('after', examples(['blocksnap remote check offsite', 'blocksnap remote check offsite --json']))
    .action(async (name: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<RemoteCheck>('remote.check', { remote: name }), remoteCheckView));
    });

  clientOptions(remote.command('snapshots').argument('<remote>', 'remote name'))
    .description('list the snapshots on a remote (from their manifests; no local catalog needed)')
    .option('--disk <disk>', 'only snapshots of this disk (id or name as on the source host)')
    .addHelpText('after', `
A snapshot whose manifest cannot be read (damaged, or from a newer blocksnap) is listed last as
damaged, with only the ids its object key names (--json: "damaged": {"code", "message"}, the
other fields null). It cannot be restored, and remote gc refuses to run while it is there;
"blocksnap remote delete REMOTE SNAPSHOT-ID --force" removes it.
${examples(['blocksnap remote snapshots offsite', 'blocksnap remote snapshots offsite --disk web1 --json'])}`)
    .action(async (name: string, flags: ClientFlags & { disk?: string }) => {
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { remote: name, damaged: true };
        if (flags.disk !== undefined) params.disk = flags.disk;
        out.result(await client.call<RemoteSnapshotEntry[]>('remote.snapshots', params), (v) => remoteSnapshotTable(v, name));
      });
    });

  clientOptions(remote.command('delete').argument('<remote>', 'remote name').argument('<snapshot>', 'remote snapshot id or unique name'))
    .description('delete a snapshot from a remote (its manifest); `remote gc` then frees the blocks nothing else uses')
    .option('--force', 'also delete a manifest that cannot be read (damaged, or from a newer blocksnap); give the snapshot id')
    .addHelpText('after', `
A damaged manifest is deleted only with --force, and found only by its snapshot id (its name is
unknown). Deleting it costs no other snapshot anything: every manifest names all of its own
blocks, and only remote gc deletes blocks.
${examples(['blocksnap remote delete offsite s-0123456789abcdef', 'blocksnap remote delete offsite s-0123456789abcdef --force'])}`)
    .action(async (name: string, snapshot: string, flags: ClientFlags & { force?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { remote: name, snapshot };
        if (flags.force === true) params.force = true;
        const s = await client.call<RemoteSnapshotEntry>('remote.delete', params);
        out.result(s, (v) => (v.damaged === null
          ? `Deleted ${v.id} (${v.name}) from ${name}; run "blocksnap remote gc ${name}" to free its blocks.`
          : `Deleted the damaged manifest of ${v.id} (${v.key}) from ${name}; run "blocksnap remote gc ${name}" to free the blocks only it named.`));
      });
    });

  jobOptions(remote.command('gc').argument('<remote>', 'remote name'))
    .description('delete the blocks on a remote that no manifest references (safe with several hosts sharing the bucket)')
    .option('--grace <seconds>', 'keep unreferenced blocks younger than this (default 3600)')
    .addHelpText('after', `
gc takes a gc lease on the remote and waits until no host holds a replication lease; replications
that start meanwhile wait for gc. Blocks younger than the grace period are kept in any case.
Leases that jobs of this data dir left when its daemon died (a crash, a kill) are deleted at once,
not waited for. gc deletes nothing while a manifest cannot be read (RemoteCorrupt, naming each
one): delete a damaged one with "blocksnap remote delete REMOTE SNAPSHOT-ID --force".
${examples(['blocksnap remote gc offsite', 'blocksnap remote gc offsite --grace 0 --json'])}`)
    .action(async (name: string, flags: JobFlags & { grace?: string }) => {
      const params: Record<string, unknown> = { remote: name };
      if (flags.grace !== undefined) params.graceSeconds = parseGraceSeconds(flags.grace);
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'remote.gc', params, `remote gc ${name}`);
        if (job !== null) out.result(job.result as RemoteGcResult, remoteGcView);
      });
    });

  jobOptions(remote.command('verify').argument('<remote>', 'remote name').argument('[snapshot]', 'a snapshot on the remote (id or name); all of them when omitted'))
    .description('read every block the remote\'s snapshots reference and check it against its digest; --repair uploads damaged ones again')
    .option('--repair', 'upload each damaged or missing block again from this host\'s store, where it holds the block intact')
    .option('--concurrency <n>', 'blocks read (and uploaded) at once (1-64, default 4)')
    .addHelpText('after', `
Replication asks only whether a block exists on the remote, never reads it back, so a block damaged
in the bucket (bit rot, a truncated object) or lost stays so however often the snapshot is
replicated, and its restores fail with RemoteCorrupt. verify finds such blocks before a restore
needs them; it downloads every block it checks. With --repair, a host whose store holds the block
(one that replicated the snapshot, or imported it) uploads it again, under a writer lease as
replication does, so a gc of any host sweeps nothing meanwhile. A block this host does not hold is
reported unrepaired: run the repair on a host that has it. Exit status 1 while a damaged block is
left unrepaired. Manifests that cannot be read are reported, and their blocks are not checked.
${examples(['blocksnap remote verify offsite', 'blocksnap remote verify offsite s-0123456789abcdef --repair'])}`)
    .action(async (name: string, snapshot: string | undefined, flags: JobFlags & { repair?: boolean; concurrency?: string }) => {
      const params: Record<string, unknown> = { remote: name };
      if (snapshot !== undefined) params.snapshot = snapshot;
      if (flags.repair === true) params.repair = true;
      if (flags.concurrency !== undefined) params.concurrency = parseConcurrency(flags.concurrency);
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'remote.verify', params, `remote verify ${name}`);
        if (job === null) return;
        const r = job.result as RemoteVerifyResult;
        out.result(r, remoteVerifyView);
        if (remoteVerifyLeftDamage(r)) process.exitCode = EXIT.failed;
      });
    });
}
