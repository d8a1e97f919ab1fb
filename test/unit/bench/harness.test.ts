import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { goalsObject, goalsSection, judge } from '../../../bench/support/goals.ts';
import { commandLine, flag, integer, list, oneOf, onOff } from '../../../bench/support/options.ts';
import {
  histogramDelta,
  histogramQuantile,
  percentilesMs,
  readHistogram,
} from '../../../bench/support/prometheus-histogram.ts';
import { table } from '../../../bench/support/report.ts';
import { UsageError } from '../../../bench/support/settings.ts';

describe('the option table', () => {
  const cli = commandLine({
    script: 'bench:x',
    summary: 'a test',
    options: {
      quick: onOff('quick', 'short phases', { env: 'X_QUICK' }),
      durationS: flag(
        'duration',
        (earlier) => (earlier.quick === true ? '5' : '20'),
        integer(1),
        'seconds per phase',
        {
          env: 'X_DURATION',
          arg: '<s>',
        },
      ),
      rates: flag('rates', '1000,2500', list(integer(1)), 'req/s', { env: 'X_RATES', arg: '<list>' }),
      mode: flag('mode', 'rate', oneOf(['rate', 'max'] as const), 'mode', {
        env: 'X_MODE',
        arg: '<name>',
        repeatable: true,
      }),
    },
  });

  test('flag over variable over default, a default may depend on an earlier option', () => {
    const settings = cli.read(['--quick', '--rates', '10,20'], { X_RATES: '5', X_MODE: 'max' });
    assert.deepEqual(settings, { quick: true, durationS: 5, rates: [10, 20], mode: 'max' });
    assert.deepEqual(cli.settingsBlock(settings), [
      '--quick true (flag)',
      '--duration 5 (default)',
      '--rates 10,20 (flag)',
      '--mode max (X_MODE)',
    ]);
  });

  test('bad values and unknown flags are usage errors naming the flag', () => {
    assert.throws(
      () => cli.read(['--duration', '0'], {}),
      (error: Error) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, /--duration/);
        return true;
      },
    );
    assert.throws(() => cli.read(['--mode', 'fast'], {}), /--mode must be one of rate, max/);
    assert.throws(() => cli.read(['--nope'], {}), UsageError);
  });

  test('the help has a line per option with its variable and default', () => {
    const help = cli.help();
    assert.match(help, /^usage: npm run bench:x -- \[options\]/);
    assert.match(help, /--duration <s>\s+seconds per phase {2}\[X_DURATION, default see above\]/);
    assert.match(help, /--rates <list>\s+req\/s {2}\[X_RATES, default 1000,2500\]/);
    assert.match(help, /--quick\s+short phases {2}\[X_QUICK, default off\]/);
  });
});

describe('a Prometheus histogram read twice', () => {
  const exposition = (n: number) =>
    [
      '# TYPE h_seconds histogram',
      `h_seconds_bucket{consumer="a",le="0.001"} ${n}`,
      `h_seconds_bucket{consumer="a",le="0.01"} ${2 * n}`,
      `h_seconds_bucket{consumer="a",le="+Inf"} ${2 * n}`,
      `h_seconds_sum{consumer="a"} ${0.01 * n}`,
      `h_seconds_count{consumer="a"} ${2 * n}`,
      `h_seconds_bucket{consumer="b",le="0.001"} 0`,
      `h_seconds_bucket{consumer="b",le="0.01"} 0`,
      `h_seconds_bucket{consumer="b",le="+Inf"} ${n}`,
      `h_seconds_sum{consumer="b"} ${n}`,
      `h_seconds_count{consumer="b"} ${n}`,
      'h_seconds_other 1',
    ].join('\n');

  test('the difference is what was observed in between, with interpolated percentiles', () => {
    const before = readHistogram(exposition(10), 'h_seconds', 'consumer');
    const after = readHistogram(exposition(110), 'h_seconds', 'consumer');
    const a = histogramDelta(after.get('a') as never, before.get('a'));
    assert.equal(a.count, 200);
    // Half the observations at ≤ 1 ms, half in (1, 10] ms: the median is 1 ms, p75 5.5 ms.
    assert.equal(histogramQuantile(a, 0.5), 0.001);
    assert.ok(Math.abs(histogramQuantile(a, 0.75) - 0.0055) < 1e-12);
    assert.equal(percentilesMs(a).mean, 5);
    // Everything above the highest finite bound: that bound, as histogram_quantile() answers.
    const b = histogramDelta(after.get('b') as never, before.get('b'));
    assert.equal(histogramQuantile(b, 0.99), 0.01);
  });

  test('summed over series without a label to group by; absent means an empty map', () => {
    const all = readHistogram(exposition(1), 'h_seconds').get('') as never;
    assert.equal((all as { count: number }).count, 3);
    assert.equal(readHistogram(exposition(1), 'missing_seconds').size, 0);
    assert.ok(Number.isNaN(histogramQuantile({ buckets: [], count: 0, sum: 0 }, 0.5)));
  });
});

test('goals: met, not met and not measured, as an object and a table', () => {
  const spec = { name: 'p99 overhead', threshold: 1, comparison: '<=' as const, unit: 'ms', issue: 14 };
  const goals = [
    judge(spec, 0.5, 'paced'),
    judge({ ...spec, name: 'ratio', comparison: '>=' }, 0.4),
    judge({ ...spec, name: 'absent' }, Number.NaN),
  ];
  assert.deepEqual(goalsObject(goals)['p99 overhead'], {
    threshold: 1,
    comparison: '<=',
    measured: 0.5,
    unit: 'ms',
    met: true,
    issue: 14,
    note: 'paced',
  });
  assert.equal(goals[1]?.met, false);
  assert.equal(goals[2]?.met, null);
  const section = goalsSection('Goals', goals);
  assert.deepEqual(section.rows[0], ['p99 overhead', '≤ 1 ms', '0.500 ms', 'met', 'paced']);
  assert.equal(section.rows[2]?.[3], 'not measured');
});

test('a table declared by its columns: headers in order, one cell function per column', () => {
  const rows = [
    { name: 'a', ms: 1.5 },
    { name: 'b', ms: 20 },
  ];
  const section = table('T', rows, { phase: (r) => r.name, 'p99 ms': (r) => String(r.ms) });
  assert.deepEqual(section, {
    title: 'T',
    columns: ['phase', 'p99 ms'],
    rows: [
      ['a', '1.5'],
      ['b', '20'],
    ],
  });
});
