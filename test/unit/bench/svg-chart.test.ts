import assert from 'node:assert/strict';
import { test } from 'node:test';
import { barChartSvg } from '../../../bench/support/svg-chart.ts';

test('one bar per value, none for null, on a log scale, with goal lines and escaped text', () => {
  const svg = barChartSvg({
    title: 'a <b> & c',
    groups: ['off', '1,000/s'],
    series: [
      { name: 'p50', color: '#111', values: [null, 2] },
      { name: 'p99', color: '#222', values: [1, 200] },
    ],
    yLabel: 'ms',
    goals: [{ value: 10, label: 'goal' }],
  });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.includes('a &lt;b&gt; &amp; c'));
  const bars = [
    ...svg.matchAll(/<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="#(111|222)">/g),
  ];
  assert.equal(bars.length, 3);
  const height = (fill: string, nth: number) => Number(bars.filter((bar) => bar[3] === fill)[nth]?.[2]);
  // Log scale: 200 is two decades above 2, and 2 is 0.3 of a decade above 1.
  const one = height('222', 0);
  const two = height('111', 0);
  const twoHundred = height('222', 1);
  assert.ok(Math.abs((twoHundred - two) / (two - one) - 2 / Math.log10(2)) < 0.01);
  assert.ok(svg.includes('stroke-dasharray'));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
});
