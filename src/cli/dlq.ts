/**
 * `telemetry-bus dlq list|replay|purge`: the dead-letter archive from a shell, straight on the database
 * and the broker (no API key: whoever can run this can read the configuration). Acts are recorded in
 * dlq_operations as `cli:<user>@<host>`.
 */
import { hostname, userInfo } from 'node:os';
import type { Config } from '../config.ts';
import {
  type DeadLetterFilterInput,
  type DeadLetterState,
  DLQ_LIMITS,
} from '../consumers/dlq/dlq-schemas.ts';
import { DlqService } from '../consumers/dlq/dlq-service.ts';
import type { DlqActor } from '../consumers/dlq/dlq-store.ts';
import { createPool } from '../db/create-pool.ts';
import { AppError } from '../errors.ts';
import { topologyFromConfig } from '../topology-from-config.ts';
import { CliError } from './cli-error.ts';
import { prepareDatabase } from './prepare-database.ts';

/** The filter flags every dlq command takes (commander's camelCase of --event-type, …). */
export interface DlqFilterFlags {
  eventType?: string;
  modelId?: string;
  errorType?: string;
  queue?: string;
  eventId?: string;
  from?: string;
  to?: string;
  state?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const STATES = ['dead', 'replayed', 'any'] as const;

function actor(): DlqActor {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (a container running as an arbitrary uid): the host still says where.
  }
  return { label: `cli:${user}@${hostname()}`, keyId: null };
}

function filterOf(flags: DlqFilterFlags): DeadLetterFilterInput {
  const filter: DeadLetterFilterInput = {};
  const texts: Array<[keyof DlqFilterFlags, keyof DeadLetterFilterInput, string]> = [
    ['eventType', 'event_type', '--event-type'],
    ['modelId', 'model_id', '--model-id'],
    ['errorType', 'error_type', '--error-type'],
    ['queue', 'queue', '--queue'],
    ['eventId', 'event_id', '--event-id'],
  ];
  for (const [flag, field, name] of texts) {
    const value = flags[flag];
    if (value === undefined) continue;
    if (value.length < 1 || value.length > DLQ_LIMITS.filterValueMaxLength) {
      throw new CliError(`${name} must be 1–${DLQ_LIMITS.filterValueMaxLength} characters`, { exitCode: 2 });
    }
    filter[field] = value;
  }
  for (const [flag, name] of [
    ['from', '--from'],
    ['to', '--to'],
  ] as const) {
    const value = flags[flag];
    if (value === undefined) continue;
    if (Number.isNaN(Date.parse(value))) {
      throw new CliError(`${name} must be an ISO 8601 date-time, got '${value}'`, { exitCode: 2 });
    }
    filter[flag] = new Date(value).toISOString();
  }
  return filter;
}

function stateOf(flags: DlqFilterFlags): DeadLetterState | 'any' {
  const state = flags.state ?? 'dead';
  if (!(STATES as readonly string[]).includes(state)) {
    throw new CliError(`--state must be one of ${STATES.join(', ')}, got '${state}'`, { exitCode: 2 });
  }
  return state as DeadLetterState | 'any';
}

function integerFlag(name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new CliError(`${name} must be an integer 1–${max}, got '${raw}'`, { exitCode: 2 });
  }
  return value;
}

async function withService<T>(config: Config, use: (service: DlqService) => Promise<T>): Promise<T> {
  await prepareDatabase(config.databaseUrl, (message) => process.stderr.write(`${message}\n`));
  const pool = createPool({ databaseUrl: config.databaseUrl, max: 2 });
  try {
    return await use(
      new DlqService({
        pool,
        amqpUrls: config.rabbitmqUrls,
        heartbeatSeconds: config.rabbitmqHeartbeatSeconds,
        // The partitions of this deployment are queues a dead letter can be replayed into.
        topology: topologyFromConfig(config),
      }),
    );
  } catch (error) {
    // Input errors (a bad cursor, from after to) and outages are one line, not a stack trace.
    if (error instanceof AppError) {
      throw new CliError(error.message, { cause: error, exitCode: error.statusCode < 500 ? 2 : 1 });
    }
    throw error;
  } finally {
    await pool.end();
  }
}

/**
 * A one-line progress bar on stderr, redrawn at most every 100 ms; nothing when stderr is not a
 * terminal (logs and pipes get the summary line only).
 */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr) {
  const started = Date.now();
  let drawnAt = 0;
  let drawn = false;
  const draw = (done: number, total: number) => {
    const width = 30;
    const ratio = total === 0 ? 1 : Math.min(1, done / total);
    const filled = Math.round(ratio * width);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    stream.write(
      `\r${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} ${Math.floor(ratio * 100)}% ${seconds}s`,
    );
    drawn = true;
  };
  return {
    update(done: number, total: number) {
      if (!stream.isTTY) return;
      const now = Date.now();
      if (now - drawnAt < 100 && done < total) return;
      drawnAt = now;
      draw(done, total);
    },
    /** Ends the bar's line; safe to call twice. */
    finish() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}

/** Cut to `width`, control characters (CR, LF, tab, terminal escapes) shown as spaces: one row per line. */
function clip(value: string | null, width: number): string {
  const text = Array.from(value ?? '-', (char) => {
    const code = char.charCodeAt(0);
    return code < 0x20 || (code >= 0x7f && code < 0xa0) ? ' ' : char;
  }).join('');
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

export async function listDeadLetters(
  config: Config,
  flags: DlqFilterFlags & { json?: boolean; limit?: string; cursor?: string },
): Promise<void> {
  const query = {
    ...filterOf(flags),
    state: stateOf(flags),
    limit: integerFlag('--limit', flags.limit, DLQ_LIMITS.pageSizeDefault, DLQ_LIMITS.pageSizeMax),
    ...(flags.cursor === undefined ? {} : { cursor: flags.cursor }),
  };
  const page = await withService(config, (service) => service.list(query));
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return;
  }
  const header = ['id', 'last_failure_at', 'state', 'queue', 'event_type', 'model_id', 'attempts', 'error'];
  const rows = page.items.map((item) => [
    item.id,
    item.last_failure_at,
    item.state,
    clip(item.original_queue, 24),
    clip(item.event_type, 20),
    clip(item.model_id, 40),
    String(item.attempts),
    clip(`${item.error_type}: ${item.error_message}`, 80),
  ]);
  for (const row of [header, ...rows]) process.stdout.write(`${row.join('\t')}\n`);
  if (page.next_cursor !== null) {
    process.stderr.write(`more: telemetry-bus dlq list --cursor ${page.next_cursor} (same filters)\n`);
  }
}

export async function replayDeadLetters(
  config: Config,
  flags: DlqFilterFlags & { id?: string[]; dryRun?: boolean; max?: string; json?: boolean },
): Promise<void> {
  const ids = flags.id ?? [];
  for (const id of ids) {
    if (!UUID.test(id)) throw new CliError(`--id '${id}' is not a dead letter id`, { exitCode: 2 });
  }
  const filter = filterOf(flags);
  if (ids.length > 0 && Object.keys(filter).length > 0) {
    throw new CliError('give --id or filters, not both', { exitCode: 2 });
  }
  if (flags.state !== undefined) {
    throw new CliError('replay takes only dead letters not replayed yet: --state does not apply', {
      exitCode: 2,
    });
  }
  const max = integerFlag('--max', flags.max, DLQ_LIMITS.replayMaxDefault, DLQ_LIMITS.replayMax);
  const bar = progressBar(flags.dryRun ? 'dry run' : 'replaying');
  const result = await withService(config, (service) =>
    service.replay(
      { ...(ids.length > 0 ? { ids: [...new Set(ids)] } : { filter }), dry_run: flags.dryRun === true, max },
      { actor: actor(), onProgress: (done, total) => bar.update(done, total) },
    ),
  ).finally(() => bar.finish());
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    for (const id of result.ids) process.stdout.write(`${id}\n`);
  }
  const verb = result.dry_run ? 'would replay' : 'replayed';
  process.stderr.write(
    `${verb} ${result.dry_run ? result.ids.length : result.replayed} of ${result.matched} matching dead letters` +
      `${result.skipped.length > 0 ? `; skipped ${result.skipped.length} (${summarizeSkips(result.skipped)})` : ''}` +
      ` (operation ${result.operation_id})\n`,
  );
  if (!result.dry_run && result.matched > result.ids.length + result.skipped.length) {
    process.stderr.write(
      `${result.matched - result.ids.length - result.skipped.length} left: run it again\n`,
    );
  }
}

function summarizeSkips(skipped: Array<{ reason: string }>): string {
  const counts = new Map<string, number>();
  for (const entry of skipped) counts.set(entry.reason, (counts.get(entry.reason) ?? 0) + 1);
  return [...counts].map(([reason, count]) => `${count} ${reason}`).join(', ');
}

export async function purgeDeadLetters(
  config: Config,
  flags: DlqFilterFlags & { yes?: boolean },
): Promise<void> {
  const filter = { ...filterOf(flags), state: stateOf(flags) };
  await withService(config, async (service) => {
    if (!flags.yes) {
      const count = await service.count(filter);
      throw new CliError(`would delete ${count} dead letters; nothing deleted: add --yes to delete them`, {
        exitCode: 2,
      });
    }
    const bar = progressBar('purging');
    try {
      const deleted = await service.purge(filter, actor(), (done, total) => bar.update(done, total));
      bar.finish();
      process.stderr.write(`deleted ${deleted} dead letters\n`);
    } finally {
      bar.finish();
    }
  });
}
