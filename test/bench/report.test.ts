/**
 * The bench's tables: what a verdict rests on (how many samples, their spread, the ratio run by
 * run) is printed beside it.
 */
import t from 'tap';
import { MIN_SAMPLES, SectionBuilder, markdown } from '../../bench/lib/report';
import type { Measured } from '../../bench/lib/measure';

const measured = (samples: number[]): Measured => ({
  seconds: [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!, samples,
  peakRssBytes: null, growthBytes: null, logicalBytes: null, extra: {},
});

function pair(ours: number[], limit: number[], paired: boolean): SectionBuilder {
  const s = new SectionBuilder('q', 'Q');
  s.add('c', 'limit tool', 'limit', measured(limit));
  s.add('c', 'ours tool', 'ours', measured(ours), { limit: { tool: 'limit tool' }, paired });
  return s;
}

t.test('a target on fewer than MIN_SAMPLES samples is indicative, neither met nor missed', async (t) => {
  const s = pair([1], [2], true);
  s.target('x', '≤ 1×', '0.50×', true, s.samplesOf(s.rows[1]!));
  t.equal(s.targets[0]!.met, null);
  t.match(markdown(s.build()), /\| x \| ≤ 1× \| 0\.50× \| 1 sample, indicative \|/);
});

t.test('the samples behind a ratio are the fewer of the row\'s and its limit\'s', async (t) => {
  const s = pair([1, 1, 1], [2, 2], true);
  t.equal(s.samplesOf(s.rows[1]!), 2);
});

t.test(`a target on ${MIN_SAMPLES} samples on each side is met or missed`, async (t) => {
  const s = pair([1, 1, 1], [2, 2, 2], true);
  s.target('x', '≤ 1×', '0.50×', false, s.samplesOf(s.rows[1]!));
  t.equal(s.targets[0]!.met, false);
  t.match(markdown(s.build()), /\| x \| ≤ 1× \| 0\.50× \| NO \|/);
});

t.test('paired runs keep their ratios run by run', async (t) => {
  const s = pair([1, 3, 2], [2, 2, 4], true);
  t.same(s.rows[1]!.runRatios, [0.5, 1.5, 0.5]);
  t.match(markdown(s.build()), /0\.50×, 1\.50×, 0\.50×/);
});

t.test('runs not taken in pairs get no ratios run by run', async (t) => {
  const s = pair([1, 3, 2], [2, 2, 4], false);
  t.equal(s.rows[1]!.runRatios, null);
});

t.test('a row prints its run count and the spread of its samples beside the median', async (t) => {
  const s = pair([0.5, 0.25, 0.75], [2, 2, 4], false);
  t.match(markdown(s.build()), /\| c \| ours tool \| 3 \| 0\.5000 \| 0\.2500–0\.7500 \|/);
});
