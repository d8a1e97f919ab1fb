/**
 * Goals a program can read: every results JSON has a `goals` object keyed by each goal's name as its
 * issue writes it, with its threshold, comparison, unit, the measured value and `met` (both null when
 * the run could not measure it); the shape is documented in bench/README.md. The same goals print as a
 * table (goalsSection).
 */
import type { Section } from './report.ts';

type Comparison = '<' | '<=' | '>=' | '>' | '=';

const COMPARE: Record<Comparison, [text: string, met: (measured: number, threshold: number) => boolean]> = {
  '<': ['<', (m, t) => m < t],
  '<=': ['≤', (m, t) => m <= t],
  '>=': ['≥', (m, t) => m >= t],
  '>': ['>', (m, t) => m > t],
  '=': ['=', (m, t) => m === t],
};

interface GoalSpec {
  /** The goal's name, exactly as the issue's goals table writes the measure. */
  name: string;
  threshold: number;
  comparison: Comparison;
  unit: string;
  /** The issue whose goals table it comes from. */
  issue?: number;
}

/** A goal of issue `issue`'s table, in one line. */
export const goal = (issue: number, comparison: Comparison, threshold: number, unit: string, name: string) =>
  ({ name, threshold, comparison, unit, issue }) satisfies GoalSpec;

export interface Goal extends GoalSpec {
  measured: number | null;
  met: boolean | null;
  /** How it was measured in this run (phase, rate, scenario …). */
  note?: string;
}

/** The goal with what this run measured (null, undefined or NaN: not measured). */
export function judge(spec: GoalSpec, measured: number | null | undefined, note?: string): Goal {
  const value = measured == null || Number.isNaN(measured) ? null : measured;
  const met = value === null ? null : COMPARE[spec.comparison][1](value, spec.threshold);
  return { ...spec, measured: value, met, ...(note === undefined ? {} : { note }) };
}

/** The results JSON's `goals` object. */
export function goalsObject(goals: readonly Goal[]): Record<string, Omit<Goal, 'name'>> {
  return Object.fromEntries(
    goals.map(({ name, threshold, comparison, measured, unit, met, issue, note }) => [
      name,
      {
        threshold,
        comparison,
        measured,
        unit,
        met,
        ...(issue === undefined ? {} : { issue }),
        ...(note === undefined ? {} : { note }),
      },
    ]),
  );
}

/** 3 significant digits or so: 0.500, 4.20, 12.5, 1,234. */
const withUnit = (value: number, unit: string) => {
  const size = Math.abs(value);
  const digits = Number.isInteger(value) || size >= 100 ? 0 : size >= 10 ? 1 : size >= 1 ? 2 : 3;
  const number = value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return unit === '' || unit === 'ratio' ? number : `${number} ${unit}`;
};

/** The goals as a printable table: measure, goal, measured, verdict, how. */
export function goalsSection(title: string, goals: readonly Goal[]): Section {
  return {
    title,
    columns: ['measure', 'goal', 'measured', '', 'how'],
    rows: goals.map((g) => [
      g.name,
      `${COMPARE[g.comparison][0]} ${withUnit(g.threshold, g.unit)}`,
      g.measured === null ? 'n/a' : withUnit(g.measured, g.unit),
      g.met === null ? 'not measured' : g.met ? 'met' : 'NOT met',
      g.note ?? '',
    ]),
  };
}
