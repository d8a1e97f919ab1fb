/**
 * The paced generator checked against a server whose answer time is known: an http.createServer that
 * answers every request after a fixed delay (a setTimeout, then the last millisecond to the microsecond). At 1,000 req/s, evenly spaced, nothing queues, so the
 * median latency measured from the intended send times must be the delay (within 0.2 ms), the achieved
 * rate the target, and the requests must arrive evenly spaced (not in bursts).
 *
 * The machine is shared: when it is so busy that this process does not get its timers on time (the
 * server's own timer runs late, or requests go out late), no generator could measure the delay, and the
 * test says so and is skipped rather than failed; it gets three tries first.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { type PacedLoadResult, pacedLoad } from '../../../bench/support/paced-load.ts';

const DELAY_MS = 5;

test('p50 is the server’s fixed delay within 0.2 ms at 1,000 req/s, arrivals evenly spaced', async (t) => {
  let arrivals: number[] = [];
  const timerLate: number[] = [];
  const server = createServer((request, response) => {
    const arrived = performance.now();
    arrivals.push(arrived);
    request.resume();
    // setTimeout has 1 ms granularity: it wakes up 1 ms early, and the last stretch is waited out to the
    // microsecond, so the answer time is the delay itself, not the delay plus the timer's rounding.
    const due = arrived + DELAY_MS;
    const answer = () => {
      if (performance.now() < due) return void setImmediate(answer);
      timerLate.push(performance.now() - due);
      response.end('ok');
    };
    setTimeout(answer, DELAY_MS - 1);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const attempts: string[] = [];
  try {
    for (let attempt = 1; attempt <= 3; attempt++) {
      arrivals = [];
      timerLate.length = 0;
      const result: PacedLoadResult = await pacedLoad({
        url: `http://127.0.0.1:${port}`,
        rate: 1000,
        durationS: 2,
        lanes: [[{ method: 'GET', path: '/' }]],
      });
      assert.equal(result.sent, 2000);
      assert.equal(result.responses + result.errors + result.timeouts, 2000);
      assert.equal(result.errors + result.timeouts, 0);
      const lateMs = [...timerLate].sort((a, b) => a - b)[timerLate.length >> 1] as number;
      attempts.push(
        `p50 ${result.latencyMs.p50} ms, send lag p50 ${result.sendLagMs.p50} ms, server timer late by ${lateMs.toFixed(3)} ms (p50), achieved ${result.achievedRate}/s`,
      );
      const busy = lateMs > 0.1 || result.sendLagMs.p50 > 0.1;
      if (busy) continue;
      assert.ok(
        Math.abs(result.latencyMs.p50 - DELAY_MS) <= 0.2,
        `p50 ${result.latencyMs.p50} ms, expected ${DELAY_MS} ± 0.2 ms (${attempts.at(-1)})`,
      );
      assert.ok(result.shortfall < 0.02, `achieved ${result.achievedRate} req/s of 1,000`);
      // Evenly spaced: in no 10 ms window (ten requests due) do more than 20 arrive.
      let worst = 0;
      for (let i = 0, j = 0; i < arrivals.length; i++) {
        while ((arrivals[i] as number) - (arrivals[j] as number) > 10) j++;
        worst = Math.max(worst, i - j + 1);
      }
      assert.ok(worst <= 20, `${worst} requests arrived within 10 ms`);
      return;
    }
    t.skip(`the machine was too busy to keep a 5 ms timer on time in 3 tries: ${attempts.join('; ')}`);
  } finally {
    server.close();
  }
});
