/**
 * A grouped bar chart as a self-contained SVG string (no browser, no dependency): groups along x, one bar
 * per series in each group, a logarithmic y axis (latencies span 1 ms to seconds), the value on each bar,
 * and optional horizontal goal lines.
 */

export interface ChartSeries {
  name: string;
  color: string;
  /** One value per group; null leaves a gap. */
  values: ReadonlyArray<number | null>;
}

export interface BarChart {
  title: string;
  subtitle?: string;
  groups: readonly string[];
  series: readonly ChartSeries[];
  yLabel: string;
  goals?: ReadonlyArray<{ value: number; label: string }>;
}

const escapeXml = (text: string) =>
  text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

const label = (value: number) =>
  value >= 1000
    ? `${(value / 1000).toFixed(value >= 10_000 ? 0 : 1)} s`
    : value >= 10
      ? value.toFixed(0)
      : value.toFixed(1);

export function barChartSvg(chart: BarChart): string {
  const width = 960;
  const height = 460;
  const margin = { top: 70, right: 20, bottom: 80, left: 70 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const values = chart.series.flatMap((series) =>
    series.values.filter((v): v is number => v !== null && v > 0),
  );
  const goalValues = (chart.goals ?? []).map((goal) => goal.value);
  const min = 10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(...values, ...goalValues, 1))));
  const max = 10 ** Math.ceil(Math.log10(Math.max(...values, ...goalValues, 10)));
  const y = (value: number) =>
    margin.top +
    plotHeight -
    ((Math.log10(Math.max(value, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * plotHeight;
  const groupWidth = plotWidth / Math.max(1, chart.groups.length);
  const barWidth = Math.min(40, (groupWidth * 0.8) / Math.max(1, chart.series.length));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(chart.title)}</text>`,
  ];
  if (chart.subtitle !== undefined) {
    parts.push(
      `<text x="${width / 2}" y="44" text-anchor="middle" fill="#555">${escapeXml(chart.subtitle)}</text>`,
    );
  }
  for (let decade = min; decade <= max; decade *= 10) {
    const at = y(decade);
    parts.push(
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${at}" y2="${at}" stroke="#ddd"/>`,
      `<text x="${margin.left - 6}" y="${at + 4}" text-anchor="end">${label(decade)}</text>`,
    );
  }
  parts.push(
    `<text transform="translate(18 ${margin.top + plotHeight / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`,
    `<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${margin.top + plotHeight}" stroke="#333"/>`,
    `<line x1="${margin.left}" x2="${width - margin.right}" y1="${margin.top + plotHeight}" y2="${margin.top + plotHeight}" stroke="#333"/>`,
  );
  chart.groups.forEach((group, g) => {
    const start = margin.left + g * groupWidth + (groupWidth - barWidth * chart.series.length) / 2;
    chart.series.forEach((series, s) => {
      const value = series.values[g];
      if (value === null || value === undefined) return;
      const top = y(value);
      const x = start + s * barWidth;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(margin.top + plotHeight - top).toFixed(1)}" fill="${series.color}"><title>${escapeXml(`${group}, ${series.name}: ${value} ms`)}</title></rect>`,
        `<text x="${(x + barWidth / 2 - 1).toFixed(1)}" y="${(top - 3).toFixed(1)}" text-anchor="middle" font-size="10">${label(value)}</text>`,
      );
    });
    parts.push(
      `<text x="${(margin.left + (g + 0.5) * groupWidth).toFixed(1)}" y="${margin.top + plotHeight + 18}" text-anchor="middle">${escapeXml(group)}</text>`,
    );
  });
  for (const goal of chart.goals ?? []) {
    const at = y(goal.value);
    parts.push(
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${at}" y2="${at}" stroke="#c00" stroke-dasharray="6 4"/>`,
      `<text x="${width - margin.right - 4}" y="${at - 4}" text-anchor="end" fill="#c00">${escapeXml(goal.label)}</text>`,
    );
  }
  chart.series.forEach((series, s) => {
    const x = margin.left + s * 180;
    const at = height - 28;
    parts.push(
      `<rect x="${x}" y="${at - 10}" width="12" height="12" fill="${series.color}"/>`,
      `<text x="${x + 18}" y="${at}">${escapeXml(series.name)}</text>`,
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
