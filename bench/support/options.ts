/**
 * The option table of a benchmark: each option written once (flag, environment variable, default, parser,
 * help line), and from it come the `--help` text, the parser and the report's settings block. The flag
 * wins over the variable (when set and not empty), which wins over the default; a bad value is a usage
 * error (exit 2, runMain in settings.ts). A default may be a function of the options above it.
 *
 *   const cli = commandLine({ script: 'bench', summary: '…', options: {
 *     quick: onOff('quick', 'a smoke run'),
 *     durationS: flag('duration', (e) => (e.quick ? '5' : '20'), integer(1), 'seconds per phase', { arg: '<s>' }),
 *   } });
 *   const settings = cli.read();          // typed: { quick: boolean; durationS: number }
 */
import { parseArgs } from 'node:util';
import { UsageError } from './settings.ts';

export interface Option<T> {
  /** The long flag without its dashes, e.g. 'max-connections'. */
  flag: string;
  /** The environment variable read when the flag is not given. */
  env: string;
  /** The value's placeholder in the help, e.g. '<s>'; none for a switch. */
  arg?: string;
  /** The default, as the user would type it; a function sees the values of the options above it. */
  default: string | ((earlier: Record<string, unknown>) => string);
  /** Text → value; throws UsageError (or returns undefined) on a bad value. */
  parse: (raw: string, flag: string) => T | undefined;
  /** One line: what the option sets, with its unit. */
  help: string;
  /** A switch: `--flag` alone sets it, the variable is '1' or 'true'. */
  toggle?: boolean;
  /** May be given more than once; the values are joined with commas. */
  repeatable?: boolean;
}

type OptionTable = Record<string, Option<unknown>>;

export type Settings<O extends OptionTable> = { [K in keyof O]: O[K] extends Option<infer T> ? T : never };

/** The variable of a flag by the benchmarks' convention: `BENCH_` and the flag in upper snake case. */
export const envOf = (flag: string): string => `BENCH_${flag.toUpperCase().replaceAll('-', '_')}`;

/** An option in one line: its variable by envOf, `<n>` for its value unless `more` says otherwise. */
export function flag<T>(
  name: string,
  defaultValue: Option<T>['default'],
  parse: Option<T>['parse'],
  help: string,
  more: Partial<Option<T>> = {},
): Option<T> {
  return { flag: name, env: envOf(name), arg: '<n>', default: defaultValue, parse, help, ...more };
}

/** Whole seconds (≥ `min`), `<s>` in the help. */
export const seconds = (name: string, defaultValue: Option<number>['default'], help: string, min = 1) =>
  flag(name, defaultValue, integer(min), help, { arg: '<s>' });

/** A default that depends on `--quick` (an option named `quick` above it). */
export const ifQuick = (quick: string, normal: string) => (earlier: Record<string, unknown>) =>
  earlier.quick === true ? quick : normal;

/** A switch, off by default, its variable by envOf. */
export const onOff = (name: string, help: string, more: Partial<Option<boolean>> = {}): Option<boolean> =>
  flag(name, 'false', (raw) => raw === 'true' || raw === '1', help, {
    arg: undefined,
    toggle: true,
    ...more,
  });

/** A repeatable option naming some of `names` (all by default); `--scenario` reads BENCH_SCENARIOS. */
export const someOf = <T extends string>(name: string, names: readonly T[], help: string): Option<T[]> =>
  flag(name, names.join(','), list(oneOf(names)), `${help}: ${names.join(', ')}`, {
    env: `${envOf(name)}S`,
    arg: '<name>',
    repeatable: true,
  });

/** An integer ≥ `min` (and ≤ `max`). */
export function integer(min = 1, max = Number.MAX_SAFE_INTEGER): (raw: string, flag: string) => number {
  return (raw, flag) => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? ` ≥ ${min}` : ` from ${min} to ${max}`;
      throw new UsageError(`--${flag} must be an integer${range}, got '${raw}'`);
    }
    return value;
  };
}

/** A comma-separated list of `item`s (at least one; a value given twice counts once). */
export function list<T>(item: (raw: string, flag: string) => T | undefined) {
  return (raw: string, flag: string): T[] => {
    const parts = raw
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part !== '');
    if (parts.length === 0) throw new UsageError(`--${flag} needs at least one value`);
    return [
      ...new Set(
        parts.map((part) => {
          const value = item(part, flag);
          if (value === undefined) throw new UsageError(`--${flag}: bad value '${part}'`);
          return value;
        }),
      ),
    ];
  };
}

/** One of `choices`. */
export function oneOf<T extends string>(choices: readonly T[]) {
  return (raw: string, flag: string): T => {
    if (!(choices as readonly string[]).includes(raw)) {
      throw new UsageError(`--${flag} must be one of ${choices.join(', ')}, got '${raw}'`);
    }
    return raw as T;
  };
}

/** Any text; '' becomes undefined (an option that is off unless given). */
export const text = (raw: string): string | undefined => (raw === '' ? undefined : raw);

/** A URL without trailing slashes. */
export function url(raw: string, flag: string): string {
  if (!URL.canParse(raw)) throw new UsageError(`--${flag} must be a URL, got '${raw}'`);
  return raw.replace(/\/+$/, '');
}

export function commandLine<O extends OptionTable>(spec: { script: string; summary: string; options: O }) {
  const entries = Object.entries(spec.options) as Array<[keyof O & string, Option<unknown>]>;
  const sources: Record<string, string> = {};

  /** The --help text: a line per option with its variable and default. */
  const help = () => {
    const left = entries.map(([, o]) => `  --${o.flag}${o.arg === undefined ? '' : ` ${o.arg}`}`);
    const width = Math.max(...left.map((line) => line.length)) + 2;
    const shown = (o: Option<unknown>) =>
      o.toggle ? 'off' : typeof o.default === 'function' ? 'see above' : o.default || 'none';
    return [
      `usage: npm run ${spec.script} -- [options]`,
      '',
      ...spec.summary.split('\n').map((line) => `  ${line}`),
      '',
      ...entries.map(
        ([, o], i) =>
          `${left[i]?.padEnd(width)}${o.help}${o.repeatable ? ' (repeatable)' : ''}  [${o.env}, default ${shown(o)}]`,
      ),
      `${'  -h, --help'.padEnd(width)}this text`,
      '',
      'Every option also reads its environment variable; the flag wins.',
      '',
    ].join('\n');
  };

  /** Parses argv and the environment; prints the help and exits 0 on --help / -h. */
  const read = (argv = process.argv.slice(2), env = process.env): Settings<O> => {
    const options = Object.fromEntries([
      ['help', { type: 'boolean', short: 'h' }],
      ...entries.map(([, o]) => [
        o.flag,
        o.toggle ? { type: 'boolean' } : { type: 'string', multiple: !!o.repeatable },
      ]),
    ]);
    let values: Record<string, unknown>;
    try {
      values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    if (values.help === true) {
      process.stdout.write(help());
      process.exit(0);
    }
    const settings: Record<string, unknown> = {};
    for (const [key, o] of entries) {
      const given = values[o.flag];
      const fromEnv = env[o.env];
      let raw: string;
      if (given !== undefined)
        [raw, sources[key]] = [Array.isArray(given) ? given.join(',') : String(given), 'flag'];
      else if (fromEnv) [raw, sources[key]] = [fromEnv, o.env];
      else
        [raw, sources[key]] = [typeof o.default === 'function' ? o.default(settings) : o.default, 'default'];
      settings[key] = o.parse(raw, o.flag);
      if (settings[key] === undefined && raw !== '') throw new UsageError(`--${o.flag}: bad value '${raw}'`);
    }
    return settings as Settings<O>;
  };

  /** The report's settings block, after read(): one line per option, `--flag value (from …)`. */
  const settingsBlock = (settings: Settings<O>) =>
    entries.map(([key, o]) => {
      const value = settings[key];
      const shown = Array.isArray(value) ? value.join(',') : value === undefined ? '(none)' : String(value);
      return `--${o.flag} ${shown} (${sources[key] ?? 'default'})`;
    });

  return { options: spec.options, help, read, settingsBlock };
}
