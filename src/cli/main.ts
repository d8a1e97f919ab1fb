/**
 * The single entry point: `telemetry-bus <command>`. Configuration comes only from the environment and is
 * validated before any command runs.
 */
import { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { CliError } from './cli-error.ts';
import { createKey, listKeys, revokeKey } from './keys.ts';
import { prepareDatabase } from './prepare-database.ts';
import { start } from './start.ts';
import { applyTopologyNow, showTopology } from './topology.ts';

function fail(error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`telemetry-bus: configuration error: ${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof CliError) {
    process.stderr.write(`telemetry-bus: ${error.message}\n`);
    process.exit(error.exitCode);
  }
  process.stderr.write(
    `telemetry-bus: unexpected failure: ${error instanceof Error ? error.stack : String(error)}\n`,
  );
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

await program.parseAsync(process.argv);
