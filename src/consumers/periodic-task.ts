/**
 * A background job on a timer — the metrics pruner and compactor, the applied-events pruner — run in the
 * process that runs the consumers: at start, then every interval, never two runs at once (a run longer
 * than the interval makes the next tick a no-op), and stop() waits for the run in progress. A failed run
 * is logged and retried at the next tick.
 */
import type { PublisherLogger } from '../bus/spool-publisher.ts';

export interface PeriodicTaskFailures {
  logger?: PublisherLogger | undefined;
  /** What a run does, for the warning of a failed one, e.g. `pruning the metrics`. */
  what: string;
}

export class PeriodicTask {
  readonly #task: () => Promise<void>;
  readonly #intervalMs: number;
  readonly #failures: PeriodicTaskFailures | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  /**
   * @param task one run; a rejection is logged (with `failures`) and the next tick retries.
   * @param intervalMs time between two runs, in ms.
   */
  constructor(task: () => Promise<void>, intervalMs: number, failures?: PeriodicTaskFailures) {
    this.#task = task;
    this.#intervalMs = intervalMs;
    this.#failures = failures;
  }

  /** Whether stop() was called: a long run checks it between steps, to end early. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Runs now and then every interval, until {@link stop}. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    const run = () => {
      if (this.#running !== undefined) return;
      this.#running = this.#task()
        .catch((error: unknown) => {
          this.#failures?.logger?.warn(
            { err: error instanceof Error ? error.message : String(error) },
            `${this.#failures.what} failed; trying again at the next interval`,
          );
        })
        .finally(() => {
          this.#running = undefined;
        });
    };
    run();
    this.#timer = setInterval(run, this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops the timer and waits for the run in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
