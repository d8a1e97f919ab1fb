/**
 * A grouped bar chart as a self-contained SVG string (no browser, no dependency): groups along x, one bar
 * per series in each group, a logarithmic y axis (latencies span 1 ms to seconds), the value on each bar,
 * and optional horizontal goal lines.
 */

export interface BarChart {
  title: string;
  subtitle?: string;
  groups: readonly string[];
  /** One value per group for each series; null leaves a gap. */
  series: ReadonlyArray<{ name: string; color: string; values: ReadonlyArray<number | null> }>;
  yLabel: string;
  goals?: ReadonlyArray<{ value: number; label: string }>;
}

const escapeXml = (text: string) =>
  text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

const label = (value: number) =>
  value >= 1000 ? `${(value / 1000).toFixed(value >= 10_000 ? 0 : 1)} s` : value.toFixed(value >= 10 ? 0 : 1);

const textAt = (x: number | string, y: number | string, text: string, attributes = '') =>
  `<text x="${x}" y="${y}"${attributes}>${escapeXml(text)}</text>`;

export function barChartSvg(chart: BarChart): string {
  const [width, height, left, right, top, bottom] = [960, 460, 70, 20, 70, 80];
  const plotHeight = height - top - bottom;
  const base = top + plotHeight;
  const values = chart.series.flatMap((series) =>
    series.values.filter((v): v is number => v !== null && v > 0),
  );
  const goals = chart.goals ?? [];
  const min =
    10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(...values, ...goals.map((g) => g.value), 1))));
  const max = 10 ** Math.ceil(Math.log10(Math.max(...values, ...goals.map((g) => g.value), 10)));
  const y = (value: number) =>
    base - (Math.log10(Math.max(value, min) / min) / Math.log10(max / min)) * plotHeight;
  const groupWidth = (width - left - right) / Math.max(1, chart.groups.length);
  const barWidth = Math.min(40, (groupWidth * 0.8) / Math.max(1, chart.series.length));
  const hLine = (at: number, stroke: string) =>
    `<line x1="${left}" x2="${width - right}" y1="${at}" y2="${at}" stroke="${stroke}"/>`;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    textAt(width / 2, 24, chart.title, ' text-anchor="middle" font-size="16" font-weight="bold"'),
    ...(chart.subtitle === undefined
      ? []
      : [textAt(width / 2, 44, chart.subtitle, ' text-anchor="middle" fill="#555"')]),
  ];
  for (let decade = min; decade <= max; decade *= 10) {
    parts.push(
      hLine(y(decade), '#ddd'),
      textAt(left - 6, y(decade) + 4, label(decade), ' text-anchor="end"'),
    );
  }
  parts.push(
    `<text transform="translate(18 ${top + plotHeight / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${base}" stroke="#333"/>`,
    hLine(base, '#333'),
  );
  chart.groups.forEach((group, g) => {
    const start = left + g * groupWidth + (groupWidth - barWidth * chart.series.length) / 2;
    chart.series.forEach((series, s) => {
      const value = series.values[g];
      if (value === null || value === undefined) return;
      const [x, at] = [start + s * barWidth, y(value)];
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${at.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(base - at).toFixed(1)}" fill="${series.color}"><title>${escapeXml(`${group}, ${series.name}: ${value} ms`)}</title></rect>`,
        textAt(
          (x + barWidth / 2 - 1).toFixed(1),
          (at - 3).toFixed(1),
          label(value),
          ' text-anchor="middle" font-size="10"',
        ),
      );
    });
    parts.push(textAt((left + (g + 0.5) * groupWidth).toFixed(1), base + 18, group, ' text-anchor="middle"'));
  });
  for (const goal of goals) {
    const at = y(goal.value);
    parts.push(
      `<line x1="${left}" x2="${width - right}" y1="${at}" y2="${at}" stroke="#c00" stroke-dasharray="6 4"/>`,
      textAt(width - right - 4, at - 4, goal.label, ' text-anchor="end" fill="#c00"'),
    );
  }
  chart.series.forEach((series, s) => {
    parts.push(
      `<rect x="${left + s * 180}" y="${height - 38}" width="12" height="12" fill="${series.color}"/>`,
      textAt(left + s * 180 + 18, height - 28, series.name),
    );
  });
  return [...parts, '</svg>', ''].join('\n');
}
