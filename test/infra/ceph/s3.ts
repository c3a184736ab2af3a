/** Direct S3 access for tests: make buckets and look at what blocksnap left in them. */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Ceph } from './fixture';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export function s3Client(c: Ceph): S3Client {
  return new S3Client({
    endpoint: c.endpoint, region: 'us-east-1', forcePathStyle: true,
    credentials: { accessKeyId: c.accessKey, secretAccessKey: c.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

let seq = 0;
/** A new bucket with a name unique to this process. */
export async function newBucket(c: Ceph, label: string): Promise<string> {
  const name = `bs-${label}-${process.pid}-${++seq}`.toLowerCase().slice(0, 63);
  const s3 = s3Client(c);
  try {
    await s3.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    s3.destroy();
  }
  return name;
}

export async function listKeys(c: Ceph, bucket: string, prefix = ''): Promise<Array<{ key: string; size: number }>> {
  const s3 = s3Client(c);
  const out: Array<{ key: string; size: number }> = [];
  try {
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
      for (const o of page.Contents ?? []) out.push({ key: o.Key!, size: o.Size ?? 0 });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } finally {
    s3.destroy();
  }
  return out;
}

export async function putObject(c: Ceph, bucket: string, key: string, body: Buffer): Promise<void> {
  const s3 = s3Client(c);
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  } finally {
    s3.destroy();
  }
}

/** A credentials file in `dir`, mode 0600 unless told otherwise. */
export function credentialsFile(dir: string, c: Ceph, o: { secret?: string; mode?: number; name?: string } = {}): string {
  const path = join(dir, o.name ?? 'creds');
  writeFileSync(path, `[default]\naws_access_key_id = ${c.accessKey}\naws_secret_access_key = ${o.secret ?? c.secretKey}\n`, { mode: 0o600 });
  chmodSync(path, o.mode ?? 0o600);
  return path;
}

/** Deletes every object of a bucket and the bucket: benchmarks write gigabytes and must give them back. */
export async function deleteBucket(c: Ceph, bucket: string): Promise<void> {
  const s3 = s3Client(c);
  try {
    for (;;) {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length === 0) break;
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
    }
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    s3.destroy();
  }
}
