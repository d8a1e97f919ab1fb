/**
 * One error handler: every failure leaves as `{ "error": { "code", "message", "field"? } }` with a code
 * from the table in errors.ts. Client errors name the offending field; a 5xx is logged with its stack and
 * returned without details.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { redactApiKeys } from '../../auth/api-key.ts';
import { isDatabaseUnavailable } from '../../db/database-unavailable.ts';
import { STORABLE_DATE_TIME_RULE } from '../../db/postgres-timestamp.ts';
import { AppError, DependencyUnavailableError, ERROR_CODES, ValidationError } from '../../errors.ts';

interface AjvIssue {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

const FASTIFY_CODES: Record<string, (error: FastifyError) => AppError> = {
  // These two are raised by the router before any route (or this handler) is chosen; they arrive
  // through the `frameworkErrors` option of the app.
  FST_ERR_BAD_URL: () => new ValidationError('url', 'the URL is malformed (bad percent-encoding)'),
  FST_ERR_MAX_PARAM_LENGTH: () => new ValidationError('url', 'a path parameter is too long'),
  FST_ERR_CTP_BODY_TOO_LARGE: () => new AppError('PAYLOAD_TOO_LARGE', 'request body is larger than 64 KiB'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () =>
    new AppError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json', {
      field: 'content-type',
    }),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () =>
    new ValidationError('content-length', 'content-length does not match the body'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => new ValidationError('body', 'body must be a JSON object'),
};

/** The input field an ajv issue is about: the missing or unknown property, or the path of the bad value. */
export function fieldOfIssue(issue: AjvIssue, context: string | undefined): string {
  const named = issue.params.missingProperty ?? issue.params.additionalProperty;
  const base = issue.instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
  if (typeof named === 'string') return base === '' ? named : `${base}.${named}`;
  if (base !== '') return base;
  return context === 'body' || context === undefined ? 'body' : context;
}

function describeIssue(issue: AjvIssue, field: string): string {
  switch (issue.keyword) {
    case 'required':
      return `${field} is required`;
    case 'additionalProperties':
      return `${field} is not a known field`;
    case 'minProperties':
      return `${field} must contain at least one field`;
    case 'enum':
      return `${field} must be one of: ${(issue.params.allowedValues as unknown[]).join(', ')}`;
    case 'format':
      if (issue.params.format === 'date-time') return `${field} ${STORABLE_DATE_TIME_RULE}`;
      return `${field} ${issue.message ?? 'is invalid'}`;
    default:
      return `${field} ${issue.message ?? 'is invalid'}`;
  }
}

/** The JSON body of an error response. */
export function errorBody(error: AppError): { error: { code: string; message: string; field?: string } } {
  const body: { code: string; message: string; field?: string } = {
    code: error.code,
    message: error.message,
  };
  if (error.field !== undefined) body.field = error.field;
  return { error: body };
}

/** Maps anything thrown while serving a request to an AppError. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const fastifyError = error as FastifyError & { validation?: AjvIssue[] };
  if (Array.isArray(fastifyError.validation) && fastifyError.validation.length > 0) {
    const issue = fastifyError.validation[0] as AjvIssue;
    const field = fieldOfIssue(issue, fastifyError.validationContext);
    return new ValidationError(field, describeIssue(issue, field), error);
  }
  const mapped = fastifyError.code === undefined ? undefined : FASTIFY_CODES[fastifyError.code];
  if (mapped !== undefined) return mapped(fastifyError);
  if (fastifyError instanceof SyntaxError || fastifyError.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new ValidationError('body', 'body is not valid JSON', error);
  }
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    // Fastify's remaining 4xx (for example a malformed URL) are input errors too.
    if (status === 404) return new AppError('ROUTE_NOT_FOUND', 'route not found', { cause: error });
    return new ValidationError('request', 'request is malformed', error);
  }
  if (isDatabaseUnavailable(error)) return new DependencyUnavailableError('PostgreSQL', error);
  return new AppError('INTERNAL_ERROR', 'internal error', { cause: error });
}

export default fp(
  async function errorHandler(app: FastifyInstance) {
    app.setErrorHandler((error, request, reply) => {
      const appError = toAppError(error);
      // The request's telemetry event reports it (code, message, and for a 5xx the stack).
      request.appError = appError;
      const status = ERROR_CODES[appError.code].status;
      if (appError.code === 'SERVICE_UNAVAILABLE') {
        request.log.warn({ err: error, code: appError.code }, 'dependency unavailable');
        reply.header('retry-after', '5');
      } else if (status >= 500) {
        request.log.error({ err: error, code: appError.code }, 'request failed');
      }
      return reply.code(status).send(errorBody(appError));
    });
    app.setNotFoundHandler((request, reply) =>
      reply.code(404).send({
        error: {
          code: 'ROUTE_NOT_FOUND',
          // A key pasted into the path is not echoed (nor, through the message, put in the event).
          message: `no route ${request.method} ${redactApiKeys(request.url.split('?')[0] ?? '')}`,
        },
      }),
    );
  },
  { name: 'error-handler' },
);
