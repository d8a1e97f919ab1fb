/**
 * Preloaded into the API process by the harness (`node --import tsx --import <this> bin/telemetry-bus.js
 * start`, with an IPC channel), so the service runs exactly as `telemetry-bus start` builds it and the
 * benchmark can still read its request thread's event-loop delay. It answers `{ type: 'loop-delay' }`
 * with the delay histogram since the previous such message (ms: mean, p50, p99, max;
 * perf_hooks.monitorEventLoopDelay, 1 ms resolution): how long ready work waited for the event loop,
 * e.g. behind the publisher's work. It never keeps the process alive.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

if (process.send !== undefined) {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  process.on('message', (message: { type?: string }) => {
    if (message?.type !== 'loop-delay') return;
    const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;
    process.send?.({
      type: 'loop-delay',
      mean: ms(delay.mean),
      p50: ms(delay.percentile(50)),
      p99: ms(delay.percentile(99)),
      max: ms(delay.max),
    });
    delay.reset();
  });
  process.channel?.unref();
}
