/**
 * The C++ unit tests (native/tests) built by cmake-js from the same source list as the addon, with
 * ASan/UBSan, so `npm test` runs them too. A sanitizer report fails the run. The optimised build
 * of the same sources is the addon every other test drives; a second, plain build of the C++
 * tests (`npm run test:native`) would add two minutes of compiling for no check the sanitized run
 * lacks.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');

function run(script: string): { status: number | null; out: string } {
  const r = spawnSync('npm', ['run', '--silent', script], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

for (const [script, label] of [['test:sanitize', 'ASan/UBSan']] as const) {
  t.test(`C++ unit tests pass (${label})`, async (t) => {
    const r = run(script);
    const summary = /(\d+) tests, (\d+) failed/.exec(r.out);
    t.ok(summary, 'the test binary printed its summary');
    if (!summary) return t.comment(r.out.slice(-4000));
    t.ok(Number(summary[1]) > 0, `${summary[1]} C++ tests ran`);
    t.equal(Number(summary[2]), 0, 'none failed');
    t.notMatch(r.out, /ERROR: AddressSanitizer|runtime error:/, 'no sanitizer report');
    t.equal(r.status, 0);
  });
}
