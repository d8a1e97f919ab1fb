import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { microBench } from '../../../bench/support/micro-bench.ts';
import { commandLine, envOf, flag, integer, onOff } from '../../../bench/support/options.ts';

describe('microBench (tinybench)', () => {
  test('times exactly the iterations asked, after the warm-up, with the hooks outside the timed calls', async () => {
    let calls = 0;
    let afterEach = 0;
    const modes: string[] = [];
    const result = await microBench(
      'busy',
      () => {
        calls++;
        const until = process.hrtime.bigint() + 20_000n; // 20 µs of work per call
        while (process.hrtime.bigint() < until);
      },
      {
        iterations: 200,
        warmup: 10,
        beforeAll: (mode) => {
          modes.push(String(mode));
        },
        afterEach: () => {
          afterEach++;
          // A slow hook must not show in the samples.
          const until = process.hrtime.bigint() + 200_000n;
          while (process.hrtime.bigint() < until);
        },
      },
    );
    assert.equal(calls, 210);
    assert.equal(afterEach, 210);
    assert.deepEqual(modes, ['warmup', 'run']);
    assert.equal(result.latencyUs.count, 200);
    assert.ok(result.latencyUs.p50 >= 20 && result.latencyUs.p50 < 150, `p50 ${result.latencyUs.p50} µs`);
    assert.ok(result.timedS < result.elapsedS, 'hooks take wall time outside the timed calls');
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
