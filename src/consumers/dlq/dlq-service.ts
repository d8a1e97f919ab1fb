/**
 * The dead-letter archive as the HTTP API and the CLI use it: list, get, delete, purge and replay, on
 * the pool and a broker connection opened per replay. It takes the inputs as the API validates them
 * (snake_case) and returns what the API sends, so the routes stay thin and never see amqplib.
 */
import type { ChannelModel } from 'amqplib';
import type pg from 'pg';
import { BrokerSession } from '../../bus/broker-session.ts';
import type { Topology } from '../../bus/topology.ts';
import { DlqReplayer } from './dlq-replay.ts';
import {
  type DeadLetterDetail,
  type DeadLetterFilterInput,
  type DeadLetterListInput,
  type DeadLetterPage,
  type DeadLetterState,
  DLQ_LIMITS,
  type ReplayInput,
  type ReplayResult,
} from './dlq-schemas.ts';
import { type DlqActor, DlqStore, normalizeFilter } from './dlq-store.ts';
import type { EmitEvent } from './replay-audit.ts';

export interface DlqServiceOptions {
  pool: pg.Pool;
  /** AMQP URLs of the broker's nodes replays publish to, tried in order. */
  amqpUrls: readonly string[];
  /** AMQP heartbeat of the replay connection, in seconds. @default {@link BROKER_SESSION_DEFAULTS} */
  heartbeatSeconds?: number;
  /** Opens the replay connection; by default a {@link BrokerSession} on `amqpUrls`. */
  connect?: () => Promise<ChannelModel>;
  /** The topology whose `retry.requeue` bindings say which queues can be replayed into. @default buildTopology() */
  topology?: Topology;
  /** Dead letters republished per confirmed transaction. @default 200 */
  replayChunkSize?: number;
  /**
   * Where replays' `dlq.replayed` audit events go: the process's spool (`EventBus.emit`). Without it
   * (the CLI; the API with telemetry off) they are published on each replay's confirm channel.
   */
  emit?: EmitEvent;
}

export interface ReplayOptions {
  actor: DlqActor;
  /** The correlation id of the request that asked, carried by the audit records. @default a fresh UUID */
  correlationId?: string;
  /** The W3C trace context of that request. */
  traceparent?: string;
  /** Called after each confirmed chunk (for a progress bar). */
  onProgress?: (done: number, total: number) => void;
}

export class DlqService {
  readonly #store: DlqStore;
  readonly #replayer: DlqReplayer;

  constructor(options: DlqServiceOptions) {
    this.#store = new DlqStore(options.pool);
    // One session for every replay of this process: a replay after a node failed starts on the next.
    const broker = new BrokerSession({
      urls: options.amqpUrls,
      name: 'telemetry-bus dlq replay',
      heartbeatSeconds: options.heartbeatSeconds,
    });
    this.#replayer = new DlqReplayer({
      pool: options.pool,
      connect: options.connect ?? (async () => (await broker.connect()).connection),
      topology: options.topology,
      chunkSize: options.replayChunkSize,
      emit: options.emit,
    });
  }

  list(query: DeadLetterListInput): Promise<DeadLetterPage> {
    return this.#store.list(query);
  }

  /** The dead letter, or undefined when there is none with this id. */
  get(id: string): Promise<DeadLetterDetail | undefined> {
    return this.#store.get(id);
  }

  /** Dead letters matching a filter (state `dead` unless given). */
  count(filter: DeadLetterFilterInput & { state?: DeadLetterState | 'any' }): Promise<number> {
    return this.#store.count(normalizeFilter(filter));
  }

  /** Deletes one dead letter; false when there is none with this id. */
  delete(id: string, actor: DlqActor): Promise<boolean> {
    return this.#store.delete(id, actor);
  }

  /** Deletes every dead letter matching the filter (state `dead` unless given); returns how many. */
  purge(
    filter: DeadLetterFilterInput & { state?: DeadLetterState | 'any' },
    actor: DlqActor,
    onProgress?: (deleted: number, total: number) => void,
  ): Promise<number> {
    return this.#store.purge(normalizeFilter(filter), actor, { onProgress });
  }

  /** Replays by ids or by filter (see dlq-replay.ts for what it guarantees). */
  replay(input: ReplayInput, options: ReplayOptions): Promise<ReplayResult> {
    return this.#replayer.replay({
      ids: input.ids,
      filter: input.filter === undefined ? undefined : normalizeFilter(input.filter),
      dryRun: input.dry_run ?? false,
      max: input.max ?? DLQ_LIMITS.replayMaxDefault,
      actor: options.actor,
      correlationId: options.correlationId,
      traceparent: options.traceparent,
      onProgress: options.onProgress,
    });
  }
}
