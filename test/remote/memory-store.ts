/** An in-memory ObjectStore with S3's visible semantics, for tests of the protocols built on it. */
import type { ObjectInfo, ObjectStore } from '../../src/remote/object-store';

export class MemoryStore implements ObjectStore {
  readonly description = 'memory';
  readonly objects = new Map<string, { body: Buffer; lastModified: Date }>();
  puts = 0;

  async put(key: string, body: Buffer): Promise<void> {
    this.puts++;
    this.objects.set(key, { body: Buffer.from(body), lastModified: new Date() });
  }
  async get(key: string): Promise<Buffer | null> { return this.objects.get(key)?.body ?? null; }
  async head(key: string): Promise<ObjectInfo | null> {
    const o = this.objects.get(key);
    return o ? { key, size: o.body.length, lastModified: o.lastModified } : null;
  }
  async *list(prefix: string): AsyncGenerator<ObjectInfo> {
    for (const key of [...this.objects.keys()].sort()) {
      if (key.startsWith(prefix)) yield (await this.head(key))!;
    }
  }
  /** Keys per listPage answer (S3: 1000). */
  pageSize = 1000;
  listPages = 0;
  async listPage(prefix: string, startAfter: string): Promise<{ objects: ObjectInfo[]; more: boolean }> {
    this.listPages++;
    const keys = [...this.objects.keys()].sort().filter((k) => k.startsWith(prefix) && k > startAfter);
    return { objects: await Promise.all(keys.slice(0, this.pageSize).map(async (k) => (await this.head(k))!)), more: keys.length > this.pageSize };
  }
  async deleteMany(keys: string[]): Promise<void> { for (const k of keys) this.objects.delete(k); }
  async check(): Promise<{ latencyMs: number }> { return { latencyMs: 0 }; }
  close(): void {}
}
