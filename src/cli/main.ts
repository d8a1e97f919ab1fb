/**
 * The single entry point: `telemetry-bus <command>`. Configuration comes only from the environment and is
 * validated before any command runs.
 */
import { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { CONSUMER_NAMES } from '../consumers/consumer-names.ts';
import { ConfigError } from '../errors.ts';
import { redactCredentials } from '../redact-credentials.ts';
import { auditVerify } from './audit.ts';
import { bench } from './bench.ts';
import { CliError } from './cli-error.ts';
import { type DlqFilterFlags, listDeadLetters, purgeDeadLetters, replayDeadLetters } from './dlq.ts';
import { createKey, listKeys, revokeKey } from './keys.ts';
import { prepareDatabase } from './prepare-database.ts';
import { start } from './start.ts';
import { applyTopologyNow, showTopology } from './topology.ts';
import { worker } from './worker.ts';

/** Every last word goes through redactCredentials: a stack or a driver's message may quote a URL. */
function fail(error: unknown): never {
  const say = (text: string) => process.stderr.write(`telemetry-bus: ${redactCredentials(text)}\n`);
  if (error instanceof ConfigError) {
    say(`configuration error: ${error.message}`);
    process.exit(2);
  }
  if (error instanceof CliError) {
    say(error.message);
    process.exit(error.exitCode);
  }
  say(`unexpected failure: ${error instanceof Error ? error.stack : String(error)}`);
  process.exit(1);
}

function run<A extends unknown[]>(action: (...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      fail(error);
    }
  };
}

const program = new Command('telemetry-bus')
  .description('LLM Model Registry API and its telemetry bus')
  .showHelpAfterError();

program
  .command('start')
  .description('create the database if missing, migrate, and serve the API')
  .action(run(async () => start(loadConfig())));

program
  .command('worker')
  .description('run consumers (no API) until stopped; several workers may run at once')
  .option('--consumers <names>', `all, or a comma-separated list of ${CONSUMER_NAMES.join(', ')}`)
  .action(run(async (options: { consumers?: string }) => worker(loadConfig(), options)));

program
  .command('migrate')
  .description('create the database if missing and apply pending migrations')
  .action(
    run(async () => {
      await prepareDatabase(loadConfig().databaseUrl, (message) => process.stderr.write(`${message}\n`));
      process.stderr.write('database is up to date\n');
    }),
  );

const keys = program.command('keys').description('manage API keys (stored only as SHA-256 hashes)');
keys
  .command('create')
  .description('create a key and print it once')
  .requiredOption('--role <role>', 'reader, writer or admin')
  .requiredOption('--name <name>', 'who or what the key is for')
  .action(run(async (options: { role: string; name: string }) => createKey(loadConfig(), options)));
keys
  .command('list')
  .description('list keys (never the keys themselves)')
  .option('--json', 'print JSON')
  .action(run(async (options: { json?: boolean }) => listKeys(loadConfig(), options)));
keys
  .command('revoke')
  .description('revoke a key by id')
  .argument('<id>', 'key id from keys list')
  .action(run(async (id: string) => revokeKey(loadConfig(), id)));

const audit = program.command('audit').description('the tamper-evident audit trail');
audit
  .command('verify')
  .description('check every hash chain of the audit trail; exit 1 at the first broken link')
  .option('--json', 'print the result as JSON')
  .action(run(async (options: { json?: boolean }) => auditVerify(loadConfig(), options)));

/** The filter options every dlq command takes. */
function withDlqFilters(command: Command): Command {
  return command
    .option('--event-type <type>', 'only this event type (e.g. model.updated)')
    .option('--model-id <id>', 'only this model')
    .option('--error-type <type>', 'only this error type (e.g. POISON_MESSAGE, DELIVERY_LIMIT, TypeError)')
    .option('--queue <queue>', 'only dead letters of this queue (e.g. audit.trail)')
    .option('--event-id <id>', 'only this event id')
    .option('--from <time>', 'last failure at or after this ISO 8601 time')
    .option('--to <time>', 'last failure before this ISO 8601 time');
}

const dlq = program.command('dlq').description('the dead-letter archive: list, replay, purge');
withDlqFilters(dlq.command('list').description('list dead letters, newest first'))
  .option('--state <state>', 'dead (default), replayed or any')
  .option('--limit <n>', 'page size, 1–200 (default 50)')
  .option('--cursor <cursor>', 'the next page, as printed after the previous one')
  .option('--json', 'print JSON')
  .action(
    run(async (options: DlqFilterFlags & { json?: boolean; limit?: string; cursor?: string }) =>
      listDeadLetters(loadConfig(), options),
    ),
  );
withDlqFilters(
  dlq
    .command('replay')
    .description('republish dead letters to the queue they failed in, with a fresh retry budget'),
)
  .option('--id <id...>', 'dead letter ids (repeatable), instead of filters')
  .option('--dry-run', 'only report what would be replayed; move nothing')
  .option('--max <n>', 'dead letters taken at most, 1–10000 (default 1000)')
  .option('--json', 'print the result as JSON')
  .action(
    run(async (options: DlqFilterFlags & { id?: string[]; dryRun?: boolean; max?: string; json?: boolean }) =>
      replayDeadLetters(loadConfig(), options),
    ),
  );
withDlqFilters(dlq.command('purge').description('delete the dead letters matching the filters'))
  .option('--state <state>', 'dead (default), replayed or any')
  .option('--yes', 'really delete them (without it, only says how many)')
  .action(
    run(async (options: DlqFilterFlags & { yes?: boolean }) => purgeDeadLetters(loadConfig(), options)),
  );

const topology = program
  .command('topology')
  .description('the RabbitMQ exchanges, queues and bindings of the bus');
topology
  .command('show')
  .description('print the topology (declared as data in src/bus/topology.ts)')
  .option('--json', 'print JSON')
  .action(run(async (options: { json?: boolean }) => showTopology(loadConfig(), options)));
topology
  .command('apply')
  .description('declare the topology on RabbitMQ now (idempotent; the API also does it at every connect)')
  .action(run(async () => applyTopologyNow(loadConfig())));

program
  .command('bench')
  .description('the end-to-end benchmark (npm run bench): run it with --help for its options')
  .helpOption(false)
  .allowUnknownOption()
  .allowExcessArguments()
  .argument('[options...]', 'passed to bench/e2e.ts')
  .action(run(async (args: string[]) => bench(args)));

await program.parseAsync(process.argv);
