/**
 * Goals a program can read: every results JSON has a `goals` object, keyed by the goal's name as its
 * issue writes it, each with its threshold, the measured value and whether it is met:
 *
 *   "goals": {
 *     "API p99 overhead at 1,000 req/s": {
 *       "threshold": 1, "comparison": "<=", "measured": 4.2, "unit": "ms", "met": false,
 *       "issue": 14, "note": "GET /models/:id, bus on − off at the same paced rate"
 *     }, …
 *   }
 *
 * `measured` is null (and `met` null) when the run could not measure it (e.g. a histogram the build does
 * not have yet, or a phase that was skipped). The same goals print as a table (goalsSection).
 */
import type { Section } from './report.ts';

export type Comparison = '<' | '<=' | '>=' | '>' | '=';

export interface GoalSpec {
  /** The goal's name, exactly as the issue's goals table writes the measure. */
  name: string;
  threshold: number;
  comparison: Comparison;
  unit: string;
  /** The issue whose goals table it comes from. */
  issue?: number;
}

/** A goal of issue `issue`'s table, in one line. */
export const goal = (
  issue: number,
  comparison: Comparison,
  threshold: number,
  unit: string,
  name: string,
): GoalSpec => ({ name, threshold, comparison, unit, issue });

export interface Goal extends GoalSpec {
  measured: number | null;
  met: boolean | null;
  /** How it was measured in this run (phase, rate, scenario …). */
  note?: string;
}

export function isMet(comparison: Comparison, measured: number, threshold: number): boolean {
  switch (comparison) {
    case '<':
      return measured < threshold;
    case '<=':
      return measured <= threshold;
    case '>=':
      return measured >= threshold;
    case '>':
      return measured > threshold;
    case '=':
      return measured === threshold;
  }
}

/** The goal with what this run measured (null or NaN: not measured). */
export function judge(spec: GoalSpec, measured: number | null | undefined, note?: string): Goal {
  const value = measured === undefined || measured === null || Number.isNaN(measured) ? null : measured;
  return {
    ...spec,
    measured: value,
    met: value === null ? null : isMet(spec.comparison, value, spec.threshold),
    ...(note === undefined ? {} : { note }),
  };
}

export interface GoalEntry {
  threshold: number;
  comparison: Comparison;
  measured: number | null;
  unit: string;
  met: boolean | null;
  issue?: number;
  note?: string;
}

/** The results JSON's `goals` object. */
export function goalsObject(goals: readonly Goal[]): Record<string, GoalEntry> {
  return Object.fromEntries(
    goals.map((goal) => [
      goal.name,
      {
        threshold: goal.threshold,
        comparison: goal.comparison,
        measured: goal.measured,
        unit: goal.unit,
        met: goal.met,
        ...(goal.issue === undefined ? {} : { issue: goal.issue }),
        ...(goal.note === undefined ? {} : { note: goal.note }),
      },
    ]),
  );
}

const COMPARISON_TEXT: Record<Comparison, string> = { '<': '<', '<=': '≤', '>=': '≥', '>': '>', '=': '=' };

const withUnit = (value: number, unit: string) => {
  const digits =
    Number.isInteger(value) || Math.abs(value) >= 100
      ? 0
      : Math.abs(value) >= 10
        ? 1
        : Math.abs(value) >= 1
          ? 2
          : 3;
  const number = value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return unit === '' || unit === 'ratio' ? number : `${number} ${unit}`;
};

export const verdictText = (met: boolean | null): string =>
  met === null ? 'not measured' : met ? 'met' : 'NOT met';

/** The goals as a printable table: measure, goal, measured, verdict, how. */
export function goalsSection(title: string, goals: readonly Goal[]): Section {
  return {
    title,
    columns: ['measure', 'goal', 'measured', '', 'how'],
    rows: goals.map((goal) => [
      goal.name,
      `${COMPARISON_TEXT[goal.comparison]} ${withUnit(goal.threshold, goal.unit)}`,
      goal.measured === null ? 'n/a' : withUnit(goal.measured, goal.unit),
      verdictText(goal.met),
      goal.note ?? '',
    ]),
  };
}
