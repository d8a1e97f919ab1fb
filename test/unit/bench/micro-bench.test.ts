import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { microBench } from '../../../bench/support/micro-bench.ts';
import { commandLine, envOf, flag, integer, onOff } from '../../../bench/support/options.ts';

describe('microBench (tinybench)', () => {
  test('times exactly the iterations asked, after the warm-up, with the batch hook outside the timed calls', async () => {
    const seen: number[] = [];
    let callsAtStart = -1;
    let batches = 0;
    const result = await microBench(
      'busy',
      (i) => {
        seen.push(i);
        const until = process.hrtime.bigint() + 20_000n; // 20 µs of work per call
        while (process.hrtime.bigint() < until);
        return i % 50 !== 0; // every 50th call fails
      },
      {
        iterations: 200,
        warmup: 10,
        batch: 1,
        atStart: () => {
          callsAtStart = seen.length;
        },
        afterBatch: () => {
          batches++;
          // A slow hook must not show in the samples.
          const until = process.hrtime.bigint() + 200_000n;
          while (process.hrtime.bigint() < until);
        },
      },
    );
    assert.deepEqual(
      seen,
      Array.from({ length: 210 }, (_, i) => i),
    );
    assert.equal(callsAtStart, 10, 'atStart runs after the warm-up, before the first timed call');
    assert.equal(batches, 210);
    assert.equal(result.calls, 200);
    assert.equal(result.latencyUs.count, 200);
    assert.equal(result.failed, 4, 'calls 50, 100, 150, 200 returned false; the warm-up is not counted');
    assert.ok(result.latencyUs.p50 >= 20 && result.latencyUs.p50 < 150, `p50 ${result.latencyUs.p50} µs`);
    assert.ok(result.callsPerSec < result.callsPerSecInCall, 'hooks take wall time outside the timed calls');
    assert.ok(result.wallS >= 200 * 200e-6, `wall ${result.wallS} s includes the 200 slow hooks`);
    assert.ok(result.gc.count >= 0 && result.involuntaryContextSwitches >= 0);
  });
});

describe('flag() and onOff()', () => {
  test('name the variable BENCH_<FLAG> and read it', () => {
    assert.equal(envOf('split-count'), 'BENCH_SPLIT_COUNT');
    const cli = commandLine({
      script: 'bench:x',
      summary: 'a test',
      options: {
        splitCount: flag('split-count', '7', integer(1), 'calls'),
        skip: onOff('skip-it', 'skip it'),
      },
    });
    assert.deepEqual(cli.read([], { BENCH_SPLIT_COUNT: '9' }), { splitCount: 9, skip: false });
    assert.deepEqual(cli.read(['--split-count', '3', '--skip-it'], {}), { splitCount: 3, skip: true });
    assert.match(cli.help(), /--split-count <n>\s+calls {2}\[BENCH_SPLIT_COUNT, default 7\]/);
  });
});
