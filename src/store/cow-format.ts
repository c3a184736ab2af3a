/**
 * Frozen format of a copy-on-write layer's `.map` file. native/volume/cow_format.h holds the same
 * constants; test/store/cow-format.test.ts asserts they agree. Changing anything is a version bump.
 *
 * Layer files live in `<data-dir>/cow/<diskId>/<layerId>.data` and `.map`:
 *   .data  sparse, of the disk's virtual size; granule g at its guest offset (a hole reads as zeros)
 *   .map   header (little-endian):
 *     0   8  magic "BSCOWMAP"
 *     8   2  version (2; version 1 is still read)
 *     10  2  flags (0)
 *     12  4  header size (4096)
 *     16  4  granule size (4096 in version 2, 65536 in version 1)
 *     20  4  reserved (0)
 *     24  8  virtual size
 *     32  8  granule count
 *     40  32 layer id (ASCII, NUL-padded)
 *     72  .. 4095 zero
 *   then the bitmap: granule g is bit (g % 8) of byte 4096 + g / 8; set = "its content is in this
 *   layer's .data". A bit is written only after its granule's data is durable.
 * Version 2 changed only the granule, 64 KiB → 4 KiB, so that a guest's 4 KiB write never reads
 * what is below it; new layers are version 2, version 1 layers of older disks are used as they are.
 */
export const COW_MAP_MAGIC = 'BSCOWMAP';
export const COW_MAP_VERSION = 2;
export const COW_MAP_HEADER_SIZE = 4096;
export const COW_GRANULE_SIZE = 4096;
export const COW_MAP_VERSION_1 = 1;
export const COW_GRANULE_SIZE_V1 = 64 * 1024;
/** The largest granule of any version. */
export const COW_MAX_GRANULE_SIZE = 64 * 1024;
export const COW_LAYER_ID_SIZE = 32;

export const COW_MAGIC_OFFSET = 0;
export const COW_VERSION_OFFSET = 8;
export const COW_FLAGS_OFFSET = 10;
export const COW_HEADER_SIZE_OFFSET = 12;
export const COW_GRANULE_SIZE_OFFSET = 16;
export const COW_RESERVED_OFFSET = 20;
export const COW_VIRTUAL_SIZE_OFFSET = 24;
export const COW_GRANULE_COUNT_OFFSET = 32;
export const COW_LAYER_ID_OFFSET = 40;
export const COW_HEADER_USED_SIZE = 72;
/** The bitmap is written back in pages of this size. */
export const COW_MAP_PAGE_SIZE = 4096;

/** Layer ids: 1..32 characters of [A-Za-z0-9._-] (safe as file names). */
export const LAYER_ID_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;

export function cowGranuleCount(virtualSize: number): number {
  return Math.ceil(virtualSize / COW_GRANULE_SIZE);
}

/** Size of a layer's .map file for a disk of `virtualSize` bytes. */
export function cowMapFileSize(virtualSize: number): number {
  return COW_MAP_HEADER_SIZE + Math.ceil(cowGranuleCount(virtualSize) / 8);
}
