/**
 * `promise`'s outcome, or a rejection with `message` once `timeoutMs` has passed — for calls to a
 * dependency that may hang (a broker or database mid-outage), so the caller answers in bounded time.
 * The timer is cleared as soon as the promise settles: it outlives no call.
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  message = `no answer within ${timeoutMs} ms`,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
