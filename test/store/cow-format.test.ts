/**
 * The .map format is defined twice, in native/volume/cow_format.h and src/store/cow-format.ts:
 * these tests read the C++ header and hold the two to the same values.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import * as cow from '../../src/store/cow-format';

const header = readFileSync(join(__dirname, '..', '..', 'native', 'volume', 'cow_format.h'), 'utf8');

/** The value of `inline constexpr <type> <name> = <expr>;`, evaluated for products like 64 * 1024. */
function constant(name: string): number {
  const m = new RegExp(`constexpr\\s+\\w+\\s+${name}\\s*=\\s*([0-9 *]+);`).exec(header);
  if (m === null) throw new Error(`${name} not found in cow_format.h`);
  return m[1]!.split('*').reduce((product, factor) => product * Number(factor.trim()), 1);
}

t.test('the magic is the same eight bytes', async (t) => {
  const m = /kCowMapMagic\[8\] = \{([^}]*)\}/.exec(header);
  t.ok(m, 'kCowMapMagic is declared');
  const chars = m![1]!.split(',').map((c) => c.trim().replace(/'/g, '')).join('');
  t.equal(chars, cow.COW_MAP_MAGIC);
});

const pairs: Array<[string, number]> = [
  ['kCowMapVersion', cow.COW_MAP_VERSION],
  ['kCowMapHeaderSize', cow.COW_MAP_HEADER_SIZE],
  ['kCowGranuleSize', cow.COW_GRANULE_SIZE],
  ['kCowMapVersion1', cow.COW_MAP_VERSION_1],
  ['kCowGranuleSizeV1', cow.COW_GRANULE_SIZE_V1],
  ['kCowMaxGranuleSize', cow.COW_MAX_GRANULE_SIZE],
  ['kCowLayerIdSize', cow.COW_LAYER_ID_SIZE],
  ['kCowMagicOffset', cow.COW_MAGIC_OFFSET],
  ['kCowVersionOffset', cow.COW_VERSION_OFFSET],
  ['kCowFlagsOffset', cow.COW_FLAGS_OFFSET],
  ['kCowHeaderSizeOffset', cow.COW_HEADER_SIZE_OFFSET],
  ['kCowGranuleSizeOffset', cow.COW_GRANULE_SIZE_OFFSET],
  ['kCowReservedOffset', cow.COW_RESERVED_OFFSET],
  ['kCowVirtualSizeOffset', cow.COW_VIRTUAL_SIZE_OFFSET],
  ['kCowGranuleCountOffset', cow.COW_GRANULE_COUNT_OFFSET],
  ['kCowLayerIdOffset', cow.COW_LAYER_ID_OFFSET],
  ['kCowHeaderUsedSize', cow.COW_HEADER_USED_SIZE],
  ['kCowMapPageSize', cow.COW_MAP_PAGE_SIZE],
];

for (const [name, value] of pairs) {
  t.test(`${name} agrees`, async (t) => {
    t.equal(constant(name), value);
  });
}

t.test('every constant of the header is compared', async (t) => {
  const declared = [...header.matchAll(/constexpr\s+[\w]+\s+(kCow\w+)(?:\[\d+\])?\s*=/g)].map((m) => m[1]);
  t.same(declared.sort(), ['kCowMapMagic', ...pairs.map(([n]) => n)].sort());
});

t.test('the map file size covers the header and one bit per granule', async (t) => {
  t.equal(cow.cowMapFileSize(0), cow.COW_MAP_HEADER_SIZE);
  t.equal(cow.cowMapFileSize(1), cow.COW_MAP_HEADER_SIZE + 1);
  t.equal(cow.cowMapFileSize(9 * cow.COW_GRANULE_SIZE), cow.COW_MAP_HEADER_SIZE + 2);
});
