/**
 * The one error hierarchy of telemetry-bus.
 *
 * Every error the service raises on purpose is an {@link AppError} with an UPPER_SNAKE `code` taken from
 * {@link ERROR_CODES}. The HTTP layer maps a code to its status and to the JSON body
 * `{ "error": { "code", "message", "field"? } }`; each code is documented in `docs/reference/errors.md`
 * (a test keeps the two in step).
 */

/** Every code the service can return, with its HTTP status and a one-line meaning for the reference. */
export const ERROR_CODES = {
  MALFORMED_REQUEST: {
    status: 400,
    description:
      'The request is not valid HTTP/1.1 (an unknown method, a bad or conflicting `content-length`, bare LF line endings).',
  },
  VALIDATION_FAILED: {
    status: 400,
    description: 'A body field, query parameter or path parameter is invalid.',
  },
  UNAUTHENTICATED: {
    status: 401,
    description:
      'No `x-api-key` header, or the key is unknown or revoked; or a metrics scrape without its bearer token.',
  },
  FORBIDDEN: { status: 403, description: "The API key's role may not perform this action." },
  MODEL_NOT_FOUND: { status: 404, description: 'No model has this `model_id`.' },
  ROUTE_NOT_FOUND: { status: 404, description: 'No route matches this method and path.' },
  DEAD_LETTER_NOT_FOUND: { status: 404, description: 'No dead letter has this `id`.' },
  METHOD_NOT_ALLOWED: { status: 405, description: '`CONNECT`: the API is not a proxy.' },
  REQUEST_TIMEOUT: {
    status: 408,
    description: 'The request (headers and body) was not received within `HTTP_REQUEST_TIMEOUT_MS`.',
  },
  MODEL_ALREADY_EXISTS: { status: 409, description: 'A model with this `model_id` is already registered.' },
  PAYLOAD_TOO_LARGE: { status: 413, description: 'The request body is larger than 64 KiB.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'The request body is not `application/json`.' },
  RATE_LIMITED: {
    status: 429,
    description:
      'Too many requests for this API key (or client address, without a valid key); retry after `retry-after` s.',
  },
  HEADERS_TOO_LARGE: { status: 431, description: 'The request headers are larger than 16 KiB.' },
  INTERNAL_ERROR: { status: 500, description: 'An unexpected failure; details are logged, never returned.' },
  SERVICE_UNAVAILABLE: { status: 503, description: 'A dependency (PostgreSQL) is unreachable; retry later.' },
} as const satisfies Record<string, { status: number; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Base class: a code from the table, a message safe to show a client, and always the `cause`. */
export class AppError extends Error {
  readonly code: ErrorCode;
  /** The offending input field (`context_window`, `limit`, …) for validation errors. */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.field = options.field;
  }

  get statusCode(): number {
    return ERROR_CODES[this.code].status;
  }
}

export class ValidationError extends AppError {
  constructor(field: string, message: string, cause?: unknown) {
    super('VALIDATION_FAILED', message, { field, cause });
  }
}

export class ModelNotFoundError extends AppError {
  constructor(modelId: string) {
    super('MODEL_NOT_FOUND', `model '${modelId}' does not exist`, { field: 'model_id' });
  }
}

export class ModelAlreadyExistsError extends AppError {
  constructor(modelId: string, cause?: unknown) {
    super('MODEL_ALREADY_EXISTS', `model '${modelId}' is already registered`, { field: 'model_id', cause });
  }
}

export class DeadLetterNotFoundError extends AppError {
  constructor(id: string) {
    super('DEAD_LETTER_NOT_FOUND', `dead letter '${id}' does not exist`, { field: 'id' });
  }
}

export class AuthError extends AppError {}

/** A dependency is down; callers should retry. Never shown with its cause. */
export class DependencyUnavailableError extends AppError {
  constructor(dependency: string, cause?: unknown) {
    super('SERVICE_UNAVAILABLE', `${dependency} is unavailable`, { cause });
  }
}

/**
 * Start-up configuration is wrong. Not an HTTP error: the CLI prints it and exits non-zero.
 */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly variable: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
    this.name = 'ConfigError';
  }
}
