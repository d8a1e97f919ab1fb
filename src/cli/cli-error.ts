/** A failure the CLI reports as one clear line and a non-zero exit code, without a stack trace. */
export class CliError extends Error {
  constructor(message: string, options: { cause?: unknown; exitCode?: number } = {}) {
    super(message, { cause: options.cause });
    this.name = 'CliError';
    this.exitCode = options.exitCode ?? 1;
  }
  readonly exitCode: number;
}
