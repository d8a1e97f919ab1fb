/**
 * The event types of the bus: one per kind of API action, one for every other request, and the actions
 * of operators that the audit trail must show (`dlq.replayed`: dead letters put back into their queue,
 * from the API or the CLI), which are not requests' events.
 */
export const EVENT_TYPES = [
  'model.registered',
  'model.updated',
  'model.deactivated',
  'model.queried',
  'filter.executed',
  'api.error',
  'api.request',
  'dlq.replayed',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/** Events about one model, which carry its `version` as `sequence` so consumers can check order. */
export const MODEL_EVENT_TYPES = [
  'model.registered',
  'model.updated',
  'model.deactivated',
  'model.queried',
] as const satisfies readonly EventType[];

/**
 * Who emitted an event. `admin`: an operator's action (`dlq.replayed`), whether it came through the API or
 * the CLI. `selftest`: a synthetic event of POST /telemetry/selftest, which consumers record as applied
 * without any effect.
 */
export const EVENT_SOURCES = ['api', 'scheduler', 'admin', 'selftest'] as const;

/** Bumped on any change to the envelope that a consumer could notice. */
export const SCHEMA_VERSION = 1 as const;
