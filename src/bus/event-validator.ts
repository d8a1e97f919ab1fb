/**
 * Validates an event against the schema of its type. Consumers run every message through it (a message
 * that fails is poison: dead-lettered with the reason, never retried) and tests run every event.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { isDateTime } from './date-time-format.ts';
import { EVENT_SCHEMAS, eventJsonSchemas, type TelemetryEvent } from './event-schemas.ts';
import { EVENT_TYPES, type EventType } from './event-types.ts';

export type EventValidation = { ok: true; event: TelemetryEvent } | { ok: false; reason: string };

const ajv = new Ajv({ allErrors: false, strict: true });
addFormats.default(ajv, ['uuid']);
ajv.addFormat('date-time', { type: 'string', validate: isDateTime });
const schemas = eventJsonSchemas();
const validators = new Map<string, ValidateFunction>(
  EVENT_TYPES.map((type) => [type, ajv.compile(schemas[type])]),
);

function isEventType(value: unknown): value is EventType {
  return typeof value === 'string' && Object.hasOwn(EVENT_SCHEMAS, value);
}

/** Checks a parsed message body; the reason names the offending field. */
export function validateEvent(value: unknown): EventValidation {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'the message is not a JSON object' };
  }
  const type = (value as { event_type?: unknown }).event_type;
  if (!isEventType(type)) return { ok: false, reason: `unknown event_type ${JSON.stringify(type)}` };
  const validate = validators.get(type) as ValidateFunction;
  if (validate(value)) return { ok: true, event: value as TelemetryEvent };
  const issue = validate.errors?.[0];
  const where = issue?.instancePath === '' || issue === undefined ? '(root)' : issue.instancePath;
  const extra =
    issue?.params && 'additionalProperty' in issue.params ? ` '${issue.params.additionalProperty}'` : '';
  return { ok: false, reason: `${type}: ${where} ${issue?.message ?? 'is invalid'}${extra}` };
}
