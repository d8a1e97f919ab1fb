/**
 * A message that can never be applied — not JSON, not an event, invalid against its schema. Retrying it
 * cannot help, so it goes straight to the dead-letter queue with this error as the reason.
 */
export class PoisonMessageError extends Error {
  readonly code = 'POISON_MESSAGE';

  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'PoisonMessageError';
  }
}
