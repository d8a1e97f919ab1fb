/**
 * Tells an outage of PostgreSQL (the server is unreachable, restarting or refusing connections) from an
 * error in a query. The API answers the first with 503; consumers will pause on it instead of retrying.
 */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
]);

/** SQLSTATEs of a server that is going away or not taking connections. */
const SERVER_STATES = new Set(['57P01', '57P02', '57P03', '53300']);

const MESSAGES = [/timeout exceeded when trying to connect/i, /connection terminated/i, /Connection ended/i];

export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    // Class 08: connection exception.
    if (NETWORK_CODES.has(code) || SERVER_STATES.has(code) || code.startsWith('08')) return true;
  }
  if (typeof message === 'string' && MESSAGES.some((pattern) => pattern.test(message))) return true;
  const cause = (error as { cause?: unknown }).cause;
  return cause !== undefined && cause !== error && isDatabaseUnavailable(cause);
}
