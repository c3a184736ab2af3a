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
  async deleteMany(keys: string[]): Promise<void> { for (const k of keys) this.objects.delete(k); }
  async check(): Promise<{ latencyMs: number }> { return { latencyMs: 0 }; }
  close(): void {}
}
