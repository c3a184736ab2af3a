/**
 * The configured remotes, in the catalog's `remotes` database (schema.ts), and this data dir's
 * host id: a random id made once, named in the leases this daemon takes on shared buckets so that
 * it recognises (and clears) its own stale leases after a crash.
 */
import { randomBytes } from 'node:crypto';
import type { Database } from 'lmdb';
import { BlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import { REMOTES_DB } from '../catalog/schema';
import type { RemoteConfig } from './config';

const HOST_KEY = '\u0000host';

export class RemoteRegistry {
  private readonly db: Database<RemoteConfig | string, string>;
  readonly hostId: string;

  constructor(private readonly catalog: Catalog) {
    this.db = catalog.database<RemoteConfig | string>(REMOTES_DB);
    const existing = this.db.get(HOST_KEY);
    if (typeof existing === 'string') {
      this.hostId = existing;
    } else {
      const id = `h${randomBytes(8).toString('hex')}`;
      catalog.txn(() => this.db.putSync(HOST_KEY, id));
      this.hostId = id;
    }
  }

  list(): RemoteConfig[] {
    const out: RemoteConfig[] = [];
    for (const { key, value } of this.db.getRange()) if (key !== HOST_KEY && typeof value === 'object') out.push(value);
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): RemoteConfig {
    const r = name === HOST_KEY ? undefined : this.db.get(name);
    if (!r || typeof r !== 'object') throw new BlocksnapError('RemoteNotFound', `no remote ${JSON.stringify(name)}`);
    return r;
  }

  add(r: RemoteConfig): void {
    this.catalog.txn(() => {
      if (this.db.get(r.name) !== undefined) throw new BlocksnapError('RemoteExists', `a remote named ${JSON.stringify(r.name)} exists already`);
      this.db.putSync(r.name, r);
    });
  }

  remove(name: string): RemoteConfig {
    const r = this.get(name);
    this.catalog.txn(() => this.db.removeSync(name));
    return r;
  }
}
