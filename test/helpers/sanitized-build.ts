/**
 * The native core built once with ASan, UBSan and libFuzzer's coverage (npm run build:sanitized,
 * clang) for both the C++ unit tests and the qcow2 fuzz target. Two test files need it and may run
 * at once: the build runs under a lock, and the second caller's build finds nothing to do.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
export const SANITIZED_DIR = join(ROOT, 'build-sanitized');

/** The reason to skip when clang is missing (its runtimes missing fail the build, saying so), else false. */
export function noClang(): string | false {
  return spawnSync('clang++', ['--version']).status !== 0 ? 'clang is not installed (apt-get install clang libclang-rt-14-dev)' : false;
}

export function buildSanitized(): { status: number | null; out: string } {
  const r = spawnSync('flock', [join(ROOT, 'build-sanitized.lock'), 'npm', 'run', '--silent', 'build:sanitized'],
    { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}
