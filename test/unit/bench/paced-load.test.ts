/**
 * The paced generator checked against a server whose answer time is known: an http.createServer (in a
 * process of its own) that answers every request after a fixed delay (a setTimeout, then the last
 * millisecond to the microsecond). At 1,000 req/s, evenly spaced, nothing queues, so the median latency
 * measured from the intended send times must be the delay (within 0.2 ms), the achieved rate the
 * target, and the requests must arrive evenly spaced (not in bursts).
 *
 * The machine is shared: when one request at a time already takes more than 0.2 ms over the delay, or
 * the server's timer or the generator's metronome runs late, no generator could measure the delay within
 * 0.2 ms; the test then says so with its figures and is skipped rather than failed, after three tries.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { type PacedLoadResult, pacedLoad } from '../../../bench/support/paced-load.ts';

const DELAY_MS = 5;

/** p50 of `count` requests sent one at a time (no pacing, nothing in flight together), ms. */
async function bareRoundTripMs(port: number, count: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/', agent }, (response) => {
            response.resume();
            response.on('end', () => resolve());
          })
          .on('error', reject);
      });
      times.push(performance.now() - started);
    }
  } finally {
    agent.destroy();
  }
  return times.sort((a, b) => a - b)[count >> 1] as number;
}

/** The server, in a process of its own (so it does not share this one's event loop with the generator). */
const SERVER = `
const http = require('node:http');
const DELAY_MS = ${DELAY_MS};
let late = [];
const server = http.createServer((request, response) => {
  const arrived = performance.now();
  request.resume();
  if (request.url === '/late') {
    const sorted = late.sort((a, b) => a - b);
    response.end(JSON.stringify({ p50: sorted[sorted.length >> 1] ?? 0, arrivals: arrivalTimes }));
    late = [];
    arrivalTimes = [];
    return;
  }
  arrivalTimes.push(arrived);
  // setTimeout has 1 ms granularity: it wakes up 1 ms early, and the last stretch is waited out to the
  // microsecond, so the answer time is the delay itself, not the delay plus the timer's rounding.
  const due = arrived + DELAY_MS;
  const answer = () => {
    if (performance.now() < due) return void setImmediate(answer);
    late.push(performance.now() - due);
    response.end('ok');
  };
  setTimeout(answer, DELAY_MS - 1);
});
let arrivalTimes = [];
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

test('p50 is the server’s fixed delay within 0.2 ms at 1,000 req/s, arrivals evenly spaced', async (t) => {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) =>
    createInterface({ input: child.stdout }).once('line', (line) => resolve(Number(line))),
  );
  const attempts: string[] = [];
  try {
    for (let attempt = 1; attempt <= 3; attempt++) {
      const bare = await bareRoundTripMs(port, 300);
      const result: PacedLoadResult = await pacedLoad({
        url: `http://127.0.0.1:${port}`,
        rate: 1000,
        durationS: 2,
        lanes: [[{ method: 'GET', path: '/' }]],
      });
      const server = (await (await fetch(`http://127.0.0.1:${port}/late`)).json()) as {
        p50: number;
        arrivals: number[];
      };
      assert.equal(result.sent, 2000);
      assert.equal(result.errors + result.timeouts, 0);
      assert.equal(result.responses, 2000);
      attempts.push(
        `p50 ${result.latencyMs.p50} ms, bare round trip p50 ${bare.toFixed(3)} ms, send lag p50 ${result.sendLagMs.p50} ms, server answer late by ${server.p50.toFixed(3)} ms (p50), achieved ${result.achievedRate}/s`,
      );
      // A machine whose bare round trip (one request at a time) is already more than 0.2 ms off the delay,
      // or that cannot keep the server's timer or the metronome on time, cannot judge the generator.
      if (server.p50 > 0.1 || result.sendLagMs.p50 > 0.1 || Math.abs(bare - DELAY_MS) > 0.2) {
        continue;
      }
      assert.ok(
        Math.abs(result.latencyMs.p50 - DELAY_MS) <= 0.2,
        `p50 ${result.latencyMs.p50} ms, expected ${DELAY_MS} ± 0.2 ms (${attempts.join('; ')})`,
      );
      assert.ok(result.shortfall < 0.02, `achieved ${result.achievedRate} req/s of 1,000`);
      // Evenly spaced: in no 10 ms window (ten requests due) do more than 20 arrive.
      const arrivals = server.arrivals;
      let worst = 0;
      for (let i = 0, j = 0; i < arrivals.length; i++) {
        while ((arrivals[i] as number) - (arrivals[j] as number) > 10) j++;
        worst = Math.max(worst, i - j + 1);
      }
      assert.ok(worst <= 20, `${worst} requests arrived within 10 ms`);
      return;
    }
    t.skip(
      `this machine's bare round trip (or timers) is more than 0.2 ms off the ${DELAY_MS} ms delay, so it cannot judge the generator: ${attempts.join('; ')}`,
    );
  } finally {
    child.stdin.end();
  }
});
