/**
 * A value loaded in the background (a database count, a broker report) that a once-a-second reader can
 * take at once without ever waiting: the reader asks for a refresh and reads what the last load gave.
 * A load that fails, or takes longer than `timeoutMs`, marks the value stale at once; its last good
 * value is still shown, with its age. At most one load is in flight, so a hanging dependency (PostgreSQL
 * down, a connection that times out) never piles up requests.
 */

export interface BackgroundValueOptions<T> {
  load: () => Promise<T>;
  /** Time between loads, in ms. @default 1000 */
  refreshMs?: number;
  /** A load still unsettled after this marks the value stale, in ms. @default 1000 */
  timeoutMs?: number;
}

export interface BackgroundReading<T> {
  /** The last value loaded, null before the first. */
  value: T | null;
  /** When it was loaded (ISO 8601), null before the first. */
  updated_at: string | null;
  /** The last load failed or is late: the value is older than it should be. */
  stale: boolean;
  /** Why, when stale. */
  error: string | null;
}

export class BackgroundValue<T> {
  readonly #load: () => Promise<T>;
  readonly #refreshMs: number;
  readonly #timeoutMs: number;
  #value: T | null = null;
  #updatedAt: number | null = null;
  #error: string | null = null;
  #inFlightSince: number | null = null;
  #lastStart = Number.NEGATIVE_INFINITY;

  constructor(options: BackgroundValueOptions<T>) {
    this.#load = options.load;
    this.#refreshMs = options.refreshMs ?? 1000;
    this.#timeoutMs = options.timeoutMs ?? 1000;
  }

  /** Starts a load if none is in flight and the last one started at least `refreshMs` ago. */
  refresh(nowMs: number): void {
    if (this.#inFlightSince !== null || nowMs - this.#lastStart < this.#refreshMs) return;
    this.#lastStart = nowMs;
    this.#inFlightSince = nowMs;
    let promise: Promise<T>;
    try {
      promise = this.#load();
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      (value) => {
        this.#value = value;
        this.#updatedAt = Date.now();
        this.#error = null;
        this.#inFlightSince = null;
      },
      (error: unknown) => {
        this.#error = error instanceof Error ? error.message : String(error);
        this.#inFlightSince = null;
      },
    );
  }

  read(nowMs: number): BackgroundReading<T> {
    const late = this.#inFlightSince !== null && nowMs - this.#inFlightSince > this.#timeoutMs;
    const error = late ? `no answer within ${this.#timeoutMs} ms` : this.#error;
    return {
      value: this.#value,
      updated_at: this.#updatedAt === null ? null : new Date(this.#updatedAt).toISOString(),
      stale: error !== null || this.#updatedAt === null,
      error,
    };
  }
}
