/**
 * The C++ unit tests (native/tests) built by cmake-js from the same source list as the addon, with
 * ASan/UBSan (clang; the same build as the qcow2 fuzz target, test/helpers/sanitized-build.ts), so
 * `npm test` runs them too. A sanitizer report fails the run. The optimised build of the same
 * sources is the addon every other test drives; a plain build of the C++ tests
 * (`npm run test:native`) would add two minutes of compiling for no check the sanitized run lacks.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { buildSanitized, noClang, SANITIZED_DIR } from '../helpers/sanitized-build';

const skip = noClang();
if (skip) t.plan(0, skip);

t.test('C++ unit tests pass (ASan/UBSan)', async (t) => {
  const build = buildSanitized();
  t.equal(build.status, 0, 'the sanitized build succeeds');
  if (build.status !== 0) return t.comment(build.out.slice(-4000));
  const r = spawnSync(join(SANITIZED_DIR, 'blocksnap_native_tests'), { encoding: 'utf8', maxBuffer: 64 << 20 });
  const out = `${r.stdout}\n${r.stderr}`;
  const summary = /(\d+) tests, (\d+) failed/.exec(out);
  t.ok(summary, 'the test binary printed its summary');
  if (!summary) return t.comment(out.slice(-4000));
  t.ok(Number(summary[1]) > 0, `${summary[1]} C++ tests ran`);
  t.equal(Number(summary[2]), 0, 'none failed');
  t.notMatch(out, /ERROR: AddressSanitizer|runtime error:/, 'no sanitizer report');
  t.equal(r.status, 0);
});
