/**
 * Copy-on-write disks through the engine in tests: the writable export's backend (the path NBD
 * requests take), reading it whole, and a full clone of a snapshot read back.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../../src/engine';
import type { Snapshot } from '../../src/engine/types';
import type { NbdBackend } from '../../src/nbd/backend';
import { finished } from './engine';

/** The writable export's backend: the same path NBD requests take. */
export async function served(engine: Engine, disk: string): Promise<NbdBackend> {
  engine.exports.setEndpoint('/nonexistent/nbd.sock');
  const e = await engine.exports.startDisk(disk);
  return engine.exports.lookup(e.name)!.backend;
}

export async function readAll(b: NbdBackend): Promise<Buffer> {
  const out = Buffer.alloc(b.size);
  for (const p of b.layout(0, b.size)) if (!p.zero) await b.readInto(p.offset, p.length, out, p.offset);
  return out;
}

/** A full clone of a snapshot, read back. */
export async function cloned(engine: Engine, images: string, snap: Snapshot, name: string): Promise<Buffer> {
  const path = join(images, name);
  await finished(engine, engine.startClone(snap.id, path));
  return readFileSync(path);
}
