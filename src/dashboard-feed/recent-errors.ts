/** The last few error responses of this process, newest first, for the dashboard's "recent errors". */

export interface RecentError {
  /** When it was answered (ISO 8601). */
  at: string;
  /** Links the error to its audit trail (GET /audit?correlation_id=…). */
  correlation_id: string;
  status: number;
  /** The error code (e.g. MODEL_NOT_FOUND), or HTTP_<status>. */
  code: string;
  message: string;
  method: string;
  /** The route pattern, null for an unknown route. */
  route: string | null;
}

export class RecentErrors {
  readonly #capacity: number;
  readonly #items: RecentError[] = [];
  #version = 0;

  /** @param capacity errors kept. @default 20 */
  constructor(capacity = 20) {
    this.#capacity = capacity;
  }

  add(error: RecentError): void {
    this.#items.unshift(error);
    if (this.#items.length > this.#capacity) this.#items.pop();
    this.#version++;
  }

  /** Newest first. */
  list(): RecentError[] {
    return [...this.#items];
  }

  /** Grows with every error added, so a reader can tell whether anything changed. */
  get version(): number {
    return this.#version;
  }
}
