/**
 * The option table of a benchmark: each option written once (flag, environment variable, default, parser,
 * help line), and from that one table come the `--help` text, the parser and the settings block of the
 * report. The flag wins over the environment variable (when set and not empty), which wins over the
 * default; a bad value is a usage error (exit 2, see runMain in settings.ts).
 *
 *   const OPTIONS = {
 *     durationS: option({ flag: 'duration', env: 'BENCH_DURATION', arg: '<s>', default: '20',
 *                         parse: integer(1), help: 'measured seconds per phase' }),
 *     quick: toggle({ flag: 'quick', env: 'BENCH_QUICK', help: 'a smoke run' }),
 *   };
 *   const cli = commandLine({ script: 'bench', summary: '…', options: OPTIONS });
 *   const settings = cli.read();          // typed: { durationS: number; quick: boolean }
 *
 * A default may depend on options defined before it (e.g. `--quick` shortening the duration): give a
 * function of the values read so far.
 */
import { parseArgs } from 'node:util';
import { UsageError } from './settings.ts';

export interface Option<T> {
  /** The long flag without its dashes, e.g. 'max-connections'. */
  flag: string;
  /** The environment variable read when the flag is not given, e.g. 'BENCH_MAX_CONNECTIONS'. */
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

export type OptionTable = Record<string, Option<unknown>>;

export type Settings<O extends OptionTable> = { [K in keyof O]: O[K] extends Option<infer T> ? T : never };

export function option<T>(spec: Option<T>): Option<T> {
  return spec;
}

/** A boolean switch, off by default. */
export function toggle(spec: { flag: string; env: string; help: string }): Option<boolean> {
  return { ...spec, default: 'false', toggle: true, parse: (raw) => raw === 'true' || raw === '1' };
}

/** The variable of a flag by the benchmarks' convention: `BENCH_` and the flag in upper snake case. */
export const envOf = (flag: string): string => `BENCH_${flag.toUpperCase().replaceAll('-', '_')}`;

/** An option in one line: its variable by envOf, `<n>` for its value unless `arg` says otherwise. */
export function flag<T>(
  name: string,
  defaultValue: Option<T>['default'],
  parse: Option<T>['parse'],
  help: string,
  more: Partial<Option<T>> = {},
): Option<T> {
  return { flag: name, env: envOf(name), arg: '<n>', default: defaultValue, parse, help, ...more };
}

/**
 * A repeatable option naming some of `names` (all by default), its variable the flag's plural in upper
 * case (`--scenario` → BENCH_SCENARIOS).
 */
export function someOf<T extends string>(name: string, names: readonly T[], help: string): Option<T[]> {
  return {
    flag: name,
    env: `${envOf(name)}S`,
    arg: '<name>',
    default: names.join(','),
    parse: list(oneOf(names)),
    help: `${help}: ${names.join(', ')}`,
    repeatable: true,
  };
}

/** A switch in one line, its variable by envOf. */
export const onOff = (name: string, help: string): Option<boolean> =>
  toggle({ flag: name, env: envOf(name), help });

// ---------------------------------------------------------------------------------------------------
// Parsers

/** An integer ≥ `min` (and ≤ `max`). */
export function integer(min = 1, max = Number.MAX_SAFE_INTEGER): (raw: string, flag: string) => number {
  return (raw, flag) => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new UsageError(
        `--${flag} must be an integer${max === Number.MAX_SAFE_INTEGER ? ` ≥ ${min}` : ` from ${min} to ${max}`}, got '${raw}'`,
      );
    }
    return value;
  };
}

/** A comma-separated list of `item`s (at least one; a value given twice counts once). */
export function list<T>(item: (raw: string, flag: string) => T | undefined) {
  return (raw: string, flag: string): T[] => {
    const items = raw
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part !== '');
    if (items.length === 0) throw new UsageError(`--${flag} needs at least one value`);
    const values = items.map((part) => {
      const value = item(part, flag);
      if (value === undefined) throw new UsageError(`--${flag}: bad value '${part}'`);
      return value;
    });
    return [...new Set(values)];
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
export function text(raw: string): string | undefined {
  return raw === '' ? undefined : raw;
}

/** A URL without trailing slashes. */
export function url(raw: string, flag: string): string {
  try {
    new URL(raw);
  } catch {
    throw new UsageError(`--${flag} must be a URL, got '${raw}'`);
  }
  return raw.replace(/\/+$/, '');
}

// ---------------------------------------------------------------------------------------------------
// The command line

export type Source = 'flag' | 'env' | 'default';

export interface CommandLine<O extends OptionTable> {
  readonly options: O;
  /** The --help text. */
  help(): string;
  /** Parses argv and the environment; prints the help and exits 0 on --help / -h. */
  read(argv?: string[], env?: NodeJS.ProcessEnv): Settings<O>;
  /** Where each value came from, after read(). */
  sources(): Record<keyof O, Source>;
  /** The report's settings block: one line per option, `--flag value (from …)`. */
  settingsBlock(settings: Settings<O>): string[];
}

export function commandLine<O extends OptionTable>(spec: {
  /** The npm script, e.g. 'bench:api-bus'. */
  script: string;
  /** One or two lines under the usage line. */
  summary: string;
  options: O;
}): CommandLine<O> {
  const entries = Object.entries(spec.options) as Array<[keyof O & string, Option<unknown>]>;
  let lastSources: Record<string, Source> = {};

  const help = () => {
    const left = entries.map(([, o]) => `  --${o.flag}${o.arg === undefined ? '' : ` ${o.arg}`}`);
    const width = Math.max(...left.map((line) => line.length)) + 2;
    const lines = entries.map(([, o], index) => {
      const defaultText =
        o.toggle === true
          ? 'off'
          : typeof o.default === 'function'
            ? 'see above'
            : o.default === ''
              ? 'none'
              : o.default;
      return `${(left[index] as string).padEnd(width)}${o.help}${o.repeatable ? ' (repeatable)' : ''}  [${o.env}, default ${defaultText}]`;
    });
    return [
      `usage: npm run ${spec.script} -- [options]`,
      '',
      ...spec.summary.split('\n').map((line) => `  ${line}`),
      '',
      ...lines,
      `${'  -h, --help'.padEnd(width)}this text`,
      '',
      'Every option also reads its environment variable; the flag wins.',
      '',
    ].join('\n');
  };

  const read = (argv = process.argv.slice(2), env = process.env): Settings<O> => {
    const parseOptions: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
      help: { type: 'boolean', short: 'h' },
    };
    for (const [, o] of entries) {
      parseOptions[o.flag] = o.toggle
        ? { type: 'boolean' }
        : { type: 'string', multiple: o.repeatable === true };
    }
    let values: Record<string, string | boolean | Array<string | boolean> | undefined>;
    try {
      values = parseArgs({ args: argv, options: parseOptions, strict: true, allowPositionals: false }).values;
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    if (values.help === true) {
      process.stdout.write(help());
      process.exit(0);
    }
    const settings: Record<string, unknown> = {};
    const sources: Record<string, Source> = {};
    for (const [key, o] of entries) {
      const given = values[o.flag];
      const fromEnv = env[o.env];
      let raw: string;
      if (given !== undefined) {
        raw = Array.isArray(given) ? given.join(',') : String(given);
        sources[key] = 'flag';
      } else if (fromEnv !== undefined && fromEnv !== '') {
        raw = fromEnv;
        sources[key] = 'env';
      } else {
        raw = typeof o.default === 'function' ? o.default(settings) : o.default;
        sources[key] = 'default';
      }
      const value = o.parse(raw, o.flag);
      if (value === undefined && raw !== '') throw new UsageError(`--${o.flag}: bad value '${raw}'`);
      settings[key] = value;
    }
    lastSources = sources;
    return settings as Settings<O>;
  };

  const settingsBlock = (settings: Settings<O>) =>
    entries.map(([key, o]) => {
      const value = settings[key];
      const shown = Array.isArray(value) ? value.join(',') : value === undefined ? '(none)' : String(value);
      return `--${o.flag} ${shown} (${lastSources[key] === 'env' ? o.env : (lastSources[key] ?? 'default')})`;
    });

  return {
    options: spec.options,
    help,
    read,
    sources: () => lastSources as Record<keyof O, Source>,
    settingsBlock,
  };
}
