/**
 * How a replay reaches the audit trail: as `dlq.replayed` events, one per part of the replay (each chunk
 * the broker confirmed; a dry run's list cut into parts the same size; a single empty part for a replay
 * that republished nothing), numbered 1, 2, … and all carrying the replay's `operation_id`, actor,
 * selection and match count. The audit consumer appends them to the chain `~global` (they are about no
 * single model), so they are hash-chained and verified like every other record.
 *
 * A part is recorded after the broker confirmed its copies and before the dead letters are marked
 * replayed: if recording fails, nothing of the chunk is marked (what the broker took is de-duplicated
 * when replayed again), and what the audit trail says was republished always was.
 */
import { randomUUID } from 'node:crypto';
import { newEventId } from '../../bus/event-id.ts';
import type { DlqReplayedData, EventOf, TelemetryEvent } from '../../bus/event-schemas.ts';
import { SCHEMA_VERSION } from '../../bus/event-types.ts';
import { childTraceparent } from '../../bus/trace-context.ts';
import type { DlqActor } from './dlq-store.ts';

/** `EventBus.emit`: keeps an event in the process's spool; false when it could not. */
export type EmitEvent = (event: TelemetryEvent, traceparent: string, timestampMs: number) => boolean;

export type ReplayedDeadLetter = DlqReplayedData['dead_letters'][number];

/** What every part of one replay says. */
export interface ReplayAuditContext {
  operationId: number;
  actor: DlqActor;
  dryRun: boolean;
  /** How many ids were asked for, or undefined for a filter. */
  idCount: number | undefined;
  /** The filter as dlq_operations records it (snake_case), or undefined when by ids. */
  filter: DlqReplayedData['selection']['filter'] | undefined;
  max: number;
  matched: number;
  /** The request's correlation id (the API), or a fresh one (the CLI). */
  correlationId?: string | undefined;
  /** The request's trace context, continued as a new span. */
  traceparent?: string | undefined;
}

/** Builds the numbered `dlq.replayed` events of one replay. */
export class ReplayAuditParts {
  readonly #context: ReplayAuditContext;
  readonly #correlationId: string;
  #parts = 0;

  constructor(context: ReplayAuditContext) {
    this.#context = context;
    this.#correlationId = context.correlationId ?? randomUUID();
  }

  /** Parts built so far. */
  get parts(): number {
    return this.#parts;
  }

  /** The next part's event, listing `deadLetters`; and the trace context and time to emit it with. */
  next(
    deadLetters: ReplayedDeadLetter[],
    nowMs = Date.now(),
  ): { event: EventOf<'dlq.replayed'>; traceparent: string; timestampMs: number } {
    const context = this.#context;
    this.#parts++;
    const event: EventOf<'dlq.replayed'> = {
      schema_version: SCHEMA_VERSION,
      event_id: newEventId(),
      event_type: 'dlq.replayed',
      timestamp: new Date(nowMs).toISOString(),
      source: 'admin',
      correlation_id: this.#correlationId,
      user_id: context.actor.userId ?? null,
      data: {
        operation_id: context.operationId,
        actor: context.actor.label,
        dry_run: context.dryRun,
        selection: {
          ids: context.idCount ?? null,
          filter: context.filter ?? null,
          max: context.max,
        },
        matched: context.matched,
        part: this.#parts,
        dead_letters: deadLetters,
      },
      metadata: null,
      error: { type: null, message: null, stack_trace: null },
    };
    return { event, traceparent: childTraceparent(context.traceparent), timestampMs: nowMs };
  }
}
