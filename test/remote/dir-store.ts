/**
 * An ObjectStore in a directory, one file per object (its key percent-encoded as the file name,
 * last-modified its mtime): a bucket that a daemon in a child process and the test share, so that
 * the child can be killed with its leases left in the bucket.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ObjectInfo, ObjectStore } from '../../src/remote/object-store';

export class DirStore implements ObjectStore {
  readonly description = 'directory';
  constructor(readonly dir: string) {}

  private file(key: string): string { return join(this.dir, encodeURIComponent(key)); }

  async put(key: string, body: Buffer): Promise<void> {
    // Whole or absent, as an S3 PUT: another process may list or read meanwhile.
    const tmp = join(this.dir, `.tmp-${randomBytes(6).toString('hex')}`);
    writeFileSync(tmp, body);
    renameSync(tmp, this.file(key));
  }
  async get(key: string): Promise<Buffer | null> {
    try { return readFileSync(this.file(key)); } catch { return null; }
  }
  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const st = statSync(this.file(key));
      return { key, size: st.size, lastModified: st.mtime };
    } catch {
      return null;
    }
  }
  keys(prefix = ''): string[] {
    return readdirSync(this.dir).filter((f) => !f.startsWith('.')).map(decodeURIComponent).filter((k) => k.startsWith(prefix)).sort();
  }
  async *list(prefix: string): AsyncGenerator<ObjectInfo> {
    for (const key of this.keys(prefix)) {
      const o = await this.head(key);
      if (o) yield o;
    }
  }
  async listPage(prefix: string, startAfter: string): Promise<{ objects: ObjectInfo[]; more: boolean }> {
    const keys = this.keys(prefix).filter((k) => k > startAfter);
    const objects: ObjectInfo[] = [];
    for (const k of keys.slice(0, 1000)) {
      const o = await this.head(k);
      if (o) objects.push(o);
    }
    return { objects, more: keys.length > 1000 };
  }
  async deleteMany(keys: string[]): Promise<void> { for (const k of keys) rmSync(this.file(k), { force: true }); }
  async check(): Promise<{ latencyMs: number }> { return { latencyMs: 0 }; }
  close(): void {}
}
