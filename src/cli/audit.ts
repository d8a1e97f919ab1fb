/** `telemetry-bus audit verify`: checks the audit trail's hash chains and reports the first broken link. */
import type { Writable } from 'node:stream';
import type { Config } from '../config.ts';
import { describeBreak, verifyAuditTrail } from '../consumers/audit/audit-verify.ts';
import { createPool } from '../db/create-pool.ts';
import { CliError } from './cli-error.ts';

export interface AuditVerifyCliOptions {
  /** Print the result as JSON. */
  json?: boolean;
}

/**
 * Prints `ok: N records in M chains`, or throws a CliError (exit code 1) describing the first broken
 * link. It reads the database only: it never migrates, so it can run against a copy or a replica.
 */
export async function auditVerify(
  config: Pick<Config, 'databaseUrl'>,
  options: AuditVerifyCliOptions = {},
  out: Pick<Writable, 'write'> = process.stdout,
  progress: Pick<Writable, 'write'> & { isTTY?: boolean } = process.stderr,
): Promise<void> {
  const pool = createPool({
    databaseUrl: config.databaseUrl,
    max: 1,
    applicationName: 'telemetry-bus audit verify',
  });
  let result: Awaited<ReturnType<typeof verifyAuditTrail>>;
  try {
    result = await verifyAuditTrail(pool, {
      onProgress: progress.isTTY ? (records) => progress.write(`\rchecked ${records} records`) : undefined,
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CliError(`cannot verify the audit trail: ${reason}`, { cause: error });
  } finally {
    if (progress.isTTY) progress.write('\r\x1b[K');
    await pool.end();
  }
  if (options.json) out.write(`${JSON.stringify(result, null, 2)}\n`);
  if (result.broken !== undefined) {
    throw new CliError(`audit trail broken at ${describeBreak(result.broken)}`, { exitCode: 1 });
  }
  if (!options.json) out.write(`ok: ${result.records} records in ${result.chains} chains\n`);
}
