/**
 * A size as people read it, in IEC units: the CLI's tables and the daemon's messages say the
 * same amount the same way (exact byte counts go in an error's details).
 */
const IEC_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;

/** 0 B, 512 B, 1.5 KiB, 10 MiB, 1.23 GiB: three significant digits, no trailing ".0". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '-';
  const sign = bytes < 0 ? '-' : '';
  let v = Math.abs(bytes);
  let unit = 0;
  while (v >= 1024 && unit < IEC_UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  if (unit === 0) return `${sign}${v} B`;
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  const fixed = v.toFixed(digits);
  const text = fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
  return `${sign}${text} ${IEC_UNITS[unit]}`;
}
