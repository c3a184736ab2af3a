import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import {
  parseCredentials, readCredentials, validateBucket, validateEndpoint, validatePrefix, validateRegion, validateRemoteName,
} from '../../src/remote/config';

t.test('credentials: ~/.aws/credentials syntax or JSON', async (t) => {
  t.same(parseCredentials('[default]\n# c\naws_access_key_id = AK\naws_secret_access_key=SK\n', 'f'), { accessKeyId: 'AK', secretAccessKey: 'SK' });
  t.same(parseCredentials('access_key_id=AK\nsecret_access_key=SK\nsession_token=T\n', 'f'), { accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'T' });
  t.same(parseCredentials('{"accessKeyId":"AK","secretAccessKey":"SK"}', 'f'), { accessKeyId: 'AK', secretAccessKey: 'SK' });
  t.throws(() => parseCredentials('aws_access_key_id = AK\n', 'f'), { code: 'CredentialsInvalid' });
  t.throws(() => parseCredentials('just a secret\n', 'f'), { code: 'CredentialsInvalid' });
  const e = (() => { try { parseCredentials('{"accessKeyId": "AK", "secretAccessKey": ', 'f'); } catch (err) { return err as Error; } return null; })();
  t.match(e, { code: 'CredentialsInvalid' });
  t.notMatch(e!.message, /AK/, 'the message never quotes the content');
});

t.test('credentials file: regular, not a symlink, no group or other access', async (t) => {
  const dir = t.testdir();
  const f = join(dir, 'c');
  writeFileSync(f, 'aws_access_key_id=AK\naws_secret_access_key=SK\n', { mode: 0o600 });
  t.same(readCredentials(f), { accessKeyId: 'AK', secretAccessKey: 'SK' });
  chmodSync(f, 0o400);
  t.same(readCredentials(f).accessKeyId, 'AK', '0400 is fine');
  for (const mode of [0o640, 0o604, 0o660, 0o644]) {
    chmodSync(f, mode);
    t.throws(() => readCredentials(f), { code: 'CredentialsInsecure', message: /chmod 600/ }, `mode ${mode.toString(8)}`);
  }
  chmodSync(f, 0o600);
  symlinkSync(f, join(dir, 'link'));
  t.throws(() => readCredentials(join(dir, 'link')), { code: 'CredentialsInsecure', message: /symlink/ });
  mkdirSync(join(dir, 'd'), { mode: 0o700 });
  t.throws(() => readCredentials(join(dir, 'd')), { code: 'CredentialsInsecure' });
  t.throws(() => readCredentials(join(dir, 'missing')), { code: 'CredentialsInvalid' });
  t.throws(() => readCredentials('relative'), { code: 'InvalidArgument' });
});

t.test('credentials file: a directory others may write is refused, a sticky one is not', async (t) => {
  const dir = t.testdir();
  for (const [mode, who] of [[0o777, 'every user'], [0o775, 'its group']] as const) {
    const open = join(dir, `open-${mode.toString(8)}`);
    mkdirSync(open);
    chmodSync(open, mode);
    writeFileSync(join(open, 'c'), 'aws_access_key_id=AK\naws_secret_access_key=SK\n', { mode: 0o600 });
    t.throws(() => readCredentials(join(open, 'c')), {
      code: 'CredentialsInsecure',
      message: new RegExp(`the directory ${open} of credentials file .* may be written by ${who} \\(mode 0${mode.toString(8)}\\).*chmod go-w ${open}`),
    }, `a directory of mode ${mode.toString(8)}`);
    chmodSync(open, mode | 0o1000);
    t.same(readCredentials(join(open, 'c')).accessKeyId, 'AK', `sticky, mode ${(mode | 0o1000).toString(8)}: only the file's owner may replace it there`);
  }
});

t.test('credentials file: a directory owned by another user is refused', { skip: process.getuid!() === 0 ? false : 'needs root to give a directory away' }, async (t) => {
  const dir = join(t.testdir(), 'theirs');
  mkdirSync(dir, { mode: 0o755 });
  writeFileSync(join(dir, 'c'), 'aws_access_key_id=AK\naws_secret_access_key=SK\n', { mode: 0o600 });
  chownSync(dir, 65534, 65534);
  t.throws(() => readCredentials(join(dir, 'c')), { code: 'CredentialsInsecure', message: new RegExp(`the directory ${dir} of credentials file .* is owned by uid 65534`) });
});

t.test('remote settings are validated with clear messages', async (t) => {
  t.equal(validateEndpoint('http://127.0.0.1:7480/'), 'http://127.0.0.1:7480');
  t.equal(validateEndpoint('https://s3.example.com'), 'https://s3.example.com');
  for (const bad of ['ftp://x', 'not a url', 'http://user:pw@host', 'http://host/bucket', 'http://host?x=1']) {
    t.throws(() => validateEndpoint(bad), { code: 'InvalidArgument' }, bad);
  }
  t.equal(validateBucket('vm-backups.1'), 'vm-backups.1');
  for (const bad of ['ab', 'Upper', '-x-', 'a..b', 'x'.repeat(64)]) t.throws(() => validateBucket(bad), { code: 'InvalidArgument' }, bad);
  t.equal(validatePrefix('/a/b/'), 'a/b');
  t.equal(validatePrefix(undefined), '');
  for (const bad of ['a//b', '../x', 'a/./b', 'sp ace']) t.throws(() => validatePrefix(bad), { code: 'InvalidArgument' }, bad);
  t.equal(validateRegion(undefined), 'us-east-1');
  t.throws(() => validateRegion('EU'), { code: 'InvalidArgument' });
  t.equal(validateRemoteName('off-site.1'), 'off-site.1');
  t.throws(() => validateRemoteName('-x'), { code: 'InvalidName' });
});

t.test('credentials file: its type is checked before anything opens it', async (t) => {
  // A socket cannot be opened at all (ENXIO): refused as "not a regular file" shows that the
  // check ran on the inode first, as it must for a device, whose open alone can act on it.
  // Not under t.testdir(): a socket's path must fit in 108 bytes.
  const dir = mkdtempSync(join(tmpdir(), 'bsc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 's.sock');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => server.close());
  t.throws(() => readCredentials(sock), { code: 'CredentialsInsecure', message: /not a regular file/ });
  t.throws(() => readCredentials('/dev/null'), { code: 'CredentialsInsecure', message: /not a regular file/ });
});
