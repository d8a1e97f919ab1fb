/** Feeds the live window and the recent errors from each request's telemetry event. */
import type { TelemetryEvent } from '../bus/event-schemas.ts';
import type { LiveWindow } from './live-window.ts';
import type { RecentErrors } from './recent-errors.ts';

export function eventObserver(window: LiveWindow, errors: RecentErrors): (event: TelemetryEvent) => void {
  return (event) => {
    const metadata = event.metadata;
    // Operator actions (dlq.replayed) are not requests.
    if (metadata === null) return;
    const atMs = Date.parse(event.timestamp);
    window.record({
      type: event.event_type,
      durationMs: metadata.request_duration_ms,
      status: metadata.response_code,
      atMs,
    });
    if (event.event_type === 'api.error') {
      errors.add({
        at: event.timestamp,
        correlation_id: event.correlation_id,
        status: metadata.response_code,
        code: event.error.type ?? `HTTP_${metadata.response_code}`,
        message: event.error.message ?? '',
        method: metadata.method,
        route: metadata.route,
      });
    }
  };
}
