/**
 * Replay: each selected dead letter is republished, with its original body and properties, to the one
 * queue it failed in — through `retry.requeue`, the direct exchange that binds every work queue by its own
 * name, so no other queue gets a second copy — with a fresh retry budget (the failure history and
 * `x-death` stripped) and `x-replayed-from` / `x-replayed-by` added.
 *
 * Guarantees: a dead letter is marked replayed only after the broker confirmed its copy, in the same
 * transaction that holds it (`FOR UPDATE SKIP LOCKED`, so concurrent replays never take the same one).
 * A crash between the confirm and the commit can republish it once more on the next replay; the consumers
 * de-duplicate by event id, so an event already applied changes nothing. Unroutable copies (`mandatory`
 * returns) are not marked.
 *
 * Every replay (dry runs included) is recorded in the audit trail as `dlq.replayed` events (see
 * ./replay-audit.ts): through the process's spool when it has one (the API), else published on the
 * replay's own confirm channel right after the copies they list (the CLI), and in both cases before the
 * chunk they record is marked replayed.
 */
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type pg from 'pg';
import { closeConnection } from '../../bus/broker-connection.ts';
import { DLQ_REPLAYED_MAX_DEAD_LETTERS } from '../../bus/event-schemas.ts';
import { eventRecord, toOutboundMessage } from '../../bus/outbound-message.ts';
import {
  buildTopology,
  EXCHANGES,
  exchangeFor,
  partitionExchangeName,
  queuesFor,
  type Topology,
  WORK_QUEUES,
} from '../../bus/topology.ts';
import { inTransaction } from '../../db/transaction.ts';
import { DependencyUnavailableError, ValidationError } from '../../errors.ts';
import { FAILURE_HEADERS } from '../failure-policy.ts';
import { fromJsonValue, REPLAYED_BY_HEADER, REPLAYED_FROM_HEADER } from './dead-letter-record.ts';
import type { ReplayResult } from './dlq-schemas.ts';
import {
  binder,
  type DeadLetterFilter,
  type DlqActor,
  describeFilter,
  filterConditions,
  insertOperation,
} from './dlq-store.ts';
import { type EmitEvent, ReplayAuditParts, type ReplayedDeadLetter } from './replay-audit.ts';

export interface ReplayRequest {
  /** Dead letters to replay by id; or */
  ids?: string[];
  /** the ones matching this filter (its state is ignored: only dead ones are replayed). */
  filter?: DeadLetterFilter;
  dryRun: boolean;
  /** Dead letters taken at most. */
  max: number;
  actor: DlqActor;
  /** The correlation id the audit records carry: the request's (API). @default a fresh UUID */
  correlationId?: string;
  /** W3C trace context of the request that asked, continued by the audit records. */
  traceparent?: string;
  /** Called after each confirmed chunk: dead letters taken so far, and how many will be. */
  onProgress?: (done: number, total: number) => void;
}

export interface DlqReplayerOptions {
  pool: pg.Pool;
  /** Opens the connection a replay publishes on (one per replay, closed after it). */
  connect: () => Promise<ChannelModel>;
  /** Tells which queues `retry.requeue` reaches. @default buildTopology() */
  topology?: Topology;
  /**
   * Dead letters republished per confirmed transaction (and listed per audit record), at most
   * {@link DLQ_REPLAYED_MAX_DEAD_LETTERS}. @default 200
   */
  chunkSize?: number;
  /**
   * Where the replay's `dlq.replayed` audit events go: the process's spool (`EventBus.emit`, the API).
   * Without it they are published on the replay's own confirm channel (the CLI, which has no spool), so
   * a CLI dry run needs the broker too.
   */
  emit?: EmitEvent;
}

/** The broker side of a replay: its connection, confirm channel, and what the broker returned unroutable. */
interface ReplaySession {
  connection: ChannelModel;
  channel: ConfirmChannel;
  /** Dead letter ids (copies) and event ids (audit events) that came back unroutable. */
  returned: Set<string>;
}

/** Headers a replayed copy must not carry: its failure history, and the broker's. */
const STRIPPED_HEADERS = new Set<string>([
  FAILURE_HEADERS.attempts,
  FAILURE_HEADERS.firstFailureAt,
  FAILURE_HEADERS.lastFailureAt,
  FAILURE_HEADERS.errorType,
  FAILURE_HEADERS.errorMessage,
  FAILURE_HEADERS.errorStack,
  FAILURE_HEADERS.deadLetterId,
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-delivery-count',
  REPLAYED_FROM_HEADER,
  REPLAYED_BY_HEADER,
]);

/** AMQP properties a replay copies back from the archive. */
const COPIED_PROPERTIES = [
  'contentType',
  'contentEncoding',
  'messageId',
  'correlationId',
  'type',
  'timestamp',
  'appId',
  'priority',
] as const;

interface ReplayRow {
  id: string;
  event_id: string | null;
  event_type: string | null;
  model_id: string | null;
  content: Buffer;
  properties: Record<string, unknown>;
  headers: Record<string, unknown>;
  original_exchange: string | null;
  original_routing_key: string | null;
  original_queue: string | null;
}

/**
 * The headers of a replayed copy. The original exchange and routing key stay (set from the archive when
 * the broker made the dead letter): should the copy fail again, its next dead letter names the route it
 * was first published on, not `retry.requeue`.
 */
export function replayHeaders(
  row: Pick<ReplayRow, 'id' | 'headers' | 'original_exchange' | 'original_routing_key'> & Partial<ReplayRow>,
  actor: DlqActor,
): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(row.headers)) {
    if (!STRIPPED_HEADERS.has(name)) headers[name] = fromJsonValue(value);
  }
  if (headers[FAILURE_HEADERS.originalExchange] === undefined && row.original_exchange !== null) {
    headers[FAILURE_HEADERS.originalExchange] = row.original_exchange;
  }
  if (headers[FAILURE_HEADERS.originalRoutingKey] === undefined && row.original_routing_key !== null) {
    headers[FAILURE_HEADERS.originalRoutingKey] = row.original_routing_key;
  }
  headers[REPLAYED_FROM_HEADER] = row.id;
  headers[REPLAYED_BY_HEADER] = actor.label;
  return headers;
}

function replayProperties(row: ReplayRow, actor: DlqActor) {
  const properties: Record<string, unknown> = {};
  for (const name of COPIED_PROPERTIES) {
    const value = row.properties[name];
    if (value !== null && value !== undefined) properties[name] = value;
  }
  return { ...properties, persistent: true, mandatory: true, headers: replayHeaders(row, actor) };
}

export class DlqReplayer {
  readonly #pool: pg.Pool;
  readonly #connect: () => Promise<ChannelModel>;
  readonly #chunkSize: number;
  readonly #targetOf: (queue: string | null) => ReplayTarget | undefined;
  readonly #emit: EmitEvent | undefined;

  constructor(options: DlqReplayerOptions) {
    this.#pool = options.pool;
    this.#connect = options.connect;
    this.#chunkSize = Math.min(options.chunkSize ?? 200, DLQ_REPLAYED_MAX_DEAD_LETTERS);
    this.#emit = options.emit;
    const topology = options.topology ?? buildTopology();
    this.#targetOf = (queue) => replayTarget(topology, queue);
  }

  async replay(request: ReplayRequest): Promise<ReplayResult> {
    if ((request.ids === undefined) === (request.filter === undefined)) {
      throw new ValidationError('body', 'give either ids or filter (filter {} selects every dead letter)');
    }
    if (request.ids !== undefined && request.ids.length > request.max) {
      throw new ValidationError(
        'ids',
        `ids has ${request.ids.length} entries, more than max (${request.max})`,
      );
    }
    const skipped: ReplayResult['skipped'] = [];
    const selection = this.#selection(request);
    if (request.ids !== undefined) {
      const { rows } = await this.#pool.query<{ id: string; state: string }>(
        'SELECT id, state FROM dead_letters WHERE id = ANY($1::uuid[])',
        [request.ids],
      );
      const states = new Map(rows.map((row) => [row.id, row.state]));
      for (const id of request.ids) {
        const state = states.get(id.toLowerCase());
        if (state === undefined) skipped.push({ id, reason: 'not_found' });
        else if (state !== 'dead') skipped.push({ id, reason: 'already_replayed' });
      }
    }
    // The set this replay works on, fixed now: copies that fail again during the replay become new dead
    // letters, which must not be taken by the same replay (it would go round them until max).
    const snapshot = await this.#snapshot(selection, request.max);
    const matched = snapshot.matched;
    const total = snapshot.ids.length;
    const operationId = await insertOperation(this.#pool, {
      action: 'replay',
      actor: request.actor,
      dryRun: request.dryRun,
      selection: {
        ...(request.ids !== undefined ? { ids: request.ids } : { filter: describeFilter(selection.filter) }),
        max: request.max,
      },
      matched,
    });
    const audit = new ReplayAuditParts({
      operationId,
      actor: request.actor,
      dryRun: request.dryRun,
      idCount: request.ids?.length,
      filter: request.ids === undefined ? describeFilter(selection.filter) : undefined,
      max: request.max,
      matched,
      correlationId: request.correlationId,
      traceparent: request.traceparent,
    });
    // The CLI records on the broker, so it needs a channel even when nothing is republished.
    const session =
      this.#emit === undefined || (!request.dryRun && total > 0) ? await this.#open() : undefined;
    let result: { replayed: number; ids: string[] };
    try {
      result = request.dryRun
        ? await this.#dryRun(selection, request, operationId, skipped, audit, session)
        : await this.#publish(selection, snapshot.ids, request, operationId, total, skipped, audit, session);
      // A replay that republished nothing is recorded too: who tried, and what they asked for.
      if (audit.parts === 0) await this.#record(audit, [], session);
    } finally {
      if (session !== undefined) await closeConnection(session.connection);
    }
    if (request.ids !== undefined) {
      // Dead when counted, yet neither replayed nor skipped: a concurrent replay had them locked.
      const accounted = new Set([...result.ids, ...skipped.map((entry) => entry.id.toLowerCase())]);
      for (const id of request.ids) {
        if (!accounted.has(id.toLowerCase())) skipped.push({ id, reason: 'busy' });
      }
    }
    return {
      operation_id: operationId,
      matched,
      replayed: result.replayed,
      dry_run: request.dryRun,
      ids: result.ids,
      skipped,
    };
  }

  #selection(request: ReplayRequest): { filter: DeadLetterFilter; ids: string[] | undefined } {
    return { filter: { ...(request.filter ?? {}), state: 'dead' }, ids: request.ids };
  }

  #where(
    selection: { filter: DeadLetterFilter; ids: string[] | undefined },
    values: unknown[],
  ): { where: string[]; bind: (value: unknown) => string } {
    const bind = binder(values);
    const where = filterConditions(selection.filter, bind);
    if (selection.ids !== undefined) where.push(`id = ANY(${bind(selection.ids)}::uuid[])`);
    return { where, bind };
  }

  /**
   * The dead letters the selection matches now (`matched`) and the first `max` of them, oldest first:
   * the set the replay takes its dead letters from, in one statement so that matched ≥ what is taken.
   */
  async #snapshot(
    selection: { filter: DeadLetterFilter; ids: string[] | undefined },
    max: number,
  ): Promise<{ matched: number; ids: string[] }> {
    const values: unknown[] = [];
    const { where, bind } = this.#where(selection, values);
    const { rows } = await this.#pool.query<{ id: string | null; matched: number }>(
      `SELECT m.id, c.matched
         FROM (SELECT count(*)::integer AS matched FROM dead_letters WHERE ${where.join(' AND ')}) AS c
         LEFT JOIN LATERAL (SELECT id FROM dead_letters WHERE ${where.join(' AND ')}
                             ORDER BY last_failure_at, id LIMIT ${bind(max)}) AS m ON true`,
      values,
    );
    return {
      matched: rows[0]?.matched ?? 0,
      ids: rows.flatMap((row) => (row.id === null ? [] : [row.id])),
    };
  }

  async #dryRun(
    selection: { filter: DeadLetterFilter; ids: string[] | undefined },
    request: ReplayRequest,
    operationId: number,
    skipped: ReplayResult['skipped'],
    audit: ReplayAuditParts,
    session: ReplaySession | undefined,
  ): Promise<{ replayed: number; ids: string[] }> {
    const values: unknown[] = [];
    const { where, bind } = this.#where(selection, values);
    const { rows } = await this.#pool.query<Omit<ReplayRow, 'content' | 'properties' | 'headers'>>(
      `SELECT id, event_id, event_type, model_id, original_exchange, original_routing_key, original_queue
       FROM dead_letters WHERE ${where.join(' AND ')}
       ORDER BY last_failure_at, id LIMIT ${bind(request.max)}`,
      values,
    );
    const ids: string[] = [];
    const listed: ReplayedDeadLetter[] = [];
    for (const row of rows) {
      if (this.#targetOf(row.original_queue) !== undefined) {
        ids.push(row.id);
        listed.push(auditEntry(row));
      } else {
        skipped.push({ id: row.id, reason: 'not_replayable' });
      }
    }
    for (let start = 0; start < listed.length; start += this.#chunkSize) {
      await this.#record(audit, listed.slice(start, start + this.#chunkSize), session);
    }
    await this.#pool.query(
      'UPDATE dlq_operations SET affected_ids = $2::uuid[], affected = $3 WHERE id = $1',
      [operationId, ids, ids.length],
    );
    request.onProgress?.(rows.length, rows.length);
    return { replayed: 0, ids };
  }

  async #publish(
    selection: { filter: DeadLetterFilter; ids: string[] | undefined },
    snapshot: string[],
    request: ReplayRequest,
    operationId: number,
    total: number,
    skipped: ReplayResult['skipped'],
    audit: ReplayAuditParts,
    session: ReplaySession | undefined,
  ): Promise<{ replayed: number; ids: string[] }> {
    const replayedIds: string[] = [];
    if (total === 0 || session === undefined) return { replayed: 0, ids: replayedIds };
    const { channel, returned } = session;
    let taken = 0;
    for (let start = 0; start < snapshot.length; start += this.#chunkSize) {
      const chunk = snapshot.slice(start, start + this.#chunkSize);
      const chunkDone = await inTransaction(this.#pool, async (client) => {
        const values: unknown[] = [];
        // Only the snapshot's dead letters, still dead and still matching (a concurrent replay or a
        // delete may have taken some since), and none another replay holds.
        const { where } = this.#where({ ...selection, ids: chunk }, values);
        const { rows } = await client.query<ReplayRow>(
          `SELECT id, event_id, event_type, model_id, content, properties, headers, original_exchange,
                  original_routing_key, original_queue
           FROM dead_letters WHERE ${where.join(' AND ')}
           ORDER BY last_failure_at, id
           FOR UPDATE SKIP LOCKED`,
          values,
        );
        if (rows.length === 0) return undefined;
        const published: string[] = [];
        try {
          for (const row of rows) {
            const target = this.#targetOf(row.original_queue);
            if (target === undefined) {
              skipped.push({ id: row.id, reason: 'not_replayable' });
              continue;
            }
            const properties = replayProperties(row, request.actor);
            if (!channel.publish(target.exchange, target.routingKey, row.content, properties)) {
              await drained(channel);
            }
            published.push(row.id);
          }
          await channel.waitForConfirms();
        } catch (error) {
          // Nothing of this chunk is marked: what the broker did take is de-duplicated if replayed again.
          throw new DependencyUnavailableError('RabbitMQ', error);
        }
        const confirmed = published.filter((id) => !returned.has(id));
        for (const id of published) {
          if (returned.has(id)) skipped.push({ id, reason: 'unroutable' });
        }
        if (confirmed.length > 0) {
          const confirmedSet = new Set(confirmed);
          await this.#record(audit, rows.filter((row) => confirmedSet.has(row.id)).map(auditEntry), session);
        }
        await client.query(
          `UPDATE dead_letters SET state = 'replayed', replayed_at = now(), replayed_by = $2,
             replay_operation_id = $3
           WHERE id = ANY($1::uuid[])`,
          [confirmed, request.actor.label, operationId],
        );
        await client.query(
          `UPDATE dlq_operations SET affected_ids = affected_ids || $2::uuid[], affected = affected + $3
           WHERE id = $1`,
          [operationId, confirmed, confirmed.length],
        );
        return { ids: confirmed, taken: rows.length };
      });
      if (chunkDone === undefined) continue;
      replayedIds.push(...chunkDone.ids);
      taken += chunkDone.taken;
      request.onProgress?.(taken, total);
    }
    return { replayed: replayedIds.length, ids: replayedIds };
  }

  /** Records the next part of the replay in the audit trail (see the file's header); throws if it cannot. */
  async #record(
    audit: ReplayAuditParts,
    deadLetters: ReplayedDeadLetter[],
    session: ReplaySession | undefined,
  ): Promise<void> {
    const { event, traceparent, timestampMs } = audit.next(deadLetters);
    if (this.#emit !== undefined) {
      if (!this.#emit(event, traceparent, timestampMs)) {
        throw new DependencyUnavailableError('the telemetry spool (to record the replay in the audit trail)');
      }
      return;
    }
    if (session === undefined) throw new Error('a replay without a spool records on its channel');
    // The same message as EventBus.emit's, without a producer stamp: nothing de-duplicates it by stream.
    const message = toOutboundMessage(Buffer.from(eventRecord(event, traceparent, timestampMs)));
    try {
      session.channel.publish(message.exchange, message.routingKey, message.body, message.options);
      await session.channel.waitForConfirms();
    } catch (error) {
      throw new DependencyUnavailableError('RabbitMQ', error);
    }
    if (session.returned.has(event.event_id)) {
      throw new DependencyUnavailableError(
        'RabbitMQ',
        new Error(`the replay's audit record was unroutable: no queue is bound to ${message.exchange}`),
      );
    }
  }

  async #open(): Promise<ReplaySession> {
    let connection: ChannelModel;
    try {
      connection = await this.#connect();
    } catch (error) {
      throw new DependencyUnavailableError('RabbitMQ', error);
    }
    connection.on('error', () => {});
    try {
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => {});
      // The queue a dead letter came from may have been deleted since: the broker returns the copy.
      const returned = new Set<string>();
      channel.on('return', (message: ConsumeMessage) => {
        const from = message.properties.headers?.[REPLAYED_FROM_HEADER];
        if (typeof from === 'string') returned.add(from);
        else if (typeof message.properties.messageId === 'string') returned.add(message.properties.messageId);
      });
      // A clear error up front, rather than a channel closed by the first publish.
      await channel.checkExchange(EXCHANGES.retryRequeue);
      if (this.#emit === undefined) await channel.checkExchange(exchangeFor('dlq.replayed'));
      return { connection, channel, returned };
    } catch (error) {
      await closeConnection(connection);
      throw new DependencyUnavailableError('RabbitMQ', error);
    }
  }
}

/** Where a replayed copy is published so that it reaches its queue, and only it. */
interface ReplayTarget {
  exchange: string;
  routingKey: string;
}

/**
 * The queue a dead letter failed in, through `retry.requeue` by its name, when this topology has it.
 * A queue of a partitioned family that this topology no longer has (`audit.trail` once partitioned, or
 * `audit.trail.p5` after the partitions went from 8 to 4) is replayed where the family's events go now:
 * through the consistent-hash exchange (its `model_id` header is kept, so it lands in its model's
 * partition), or to the unpartitioned queue. Anything else is not replayable.
 */
export function replayTarget(topology: Topology, queue: string | null): ReplayTarget | undefined {
  if (queue === null) return undefined;
  if (queuesFor(topology, EXCHANGES.retryRequeue, queue).includes(queue)) {
    return { exchange: EXCHANGES.retryRequeue, routingKey: queue };
  }
  const family = queue.replace(/\.p\d+$/, '');
  if (!(WORK_QUEUES as readonly string[]).includes(family)) return undefined;
  if (queuesFor(topology, EXCHANGES.retryRequeue, family).includes(family)) {
    return { exchange: EXCHANGES.retryRequeue, routingKey: family };
  }
  const hash = partitionExchangeName(family);
  if (topology.exchanges.some((exchange) => exchange.name === hash))
    return { exchange: hash, routingKey: '' };
  return undefined;
}

/** A dead letter as an audit record lists it. */
function auditEntry(row: Pick<ReplayRow, 'id' | 'event_id' | 'event_type' | 'model_id' | 'original_queue'>) {
  return {
    id: row.id,
    event_id: row.event_id,
    event_type: row.event_type,
    model_id: row.model_id,
    queue: row.original_queue as string,
  };
}

/** Resolves when the channel can take more; rejects when it closes first. */
function drained(channel: ConfirmChannel): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      channel.off('close', onClose);
      resolve();
    };
    const onClose = () => {
      channel.off('drain', onDrain);
      reject(new Error('channel closed while waiting for it to drain'));
    };
    channel.once('drain', onDrain);
    channel.once('close', onClose);
  });
}
