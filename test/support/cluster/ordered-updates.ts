/**
 * Test support: per-model order under a cluster fault. Models registered, then updated one request at a
 * time per model (as a client that waits for each answer), beside the scenario's other load; afterwards
 * every model's audit records must carry its sequences 1, 2, 3 … in the order they were recorded.
 */
import type pg from 'pg';
import { seedModel } from '../../../bench/support/seed-models.ts';
import { runLoad } from '../http-load.ts';

export interface OrderedUpdates {
  /** Stops updating and resolves once every update in flight is answered. */
  stop(): Promise<void>;
  /** Models whose audit records are not 1, 2, 3 … in order (empty when order was kept). */
  outOfOrder(pool: pg.Pool): Promise<string[]>;
}

export interface OrderedUpdatesOptions {
  apiUrl: string;
  apiKey: string;
  /** Model ids start with it. */
  prefix: string;
  /** Models updated in parallel, each by itself one request at a time. @default 10 */
  models?: number;
  /** Updates per second of each model, at most. @default 3 */
  ratePerModel?: number;
  /** Every answered request, by correlation id (the scenario's ground truth). */
  answered: Map<string, number>;
}

export async function startOrderedUpdates(options: OrderedUpdatesOptions): Promise<OrderedUpdates> {
  const count = options.models ?? 10;
  const models = Array.from({ length: count }, (_, index) => `${options.prefix}/ordered-${index}`);
  const headers = { 'x-api-key': options.apiKey };
  const registered = await runLoad(options.apiUrl, {
    count,
    concurrency: count,
    correlationPrefix: `${options.prefix}-register`,
    request: (index) => ({
      method: 'POST',
      path: '/models',
      headers,
      body: { ...seedModel(index), model_id: models[index] },
    }),
  });
  for (const result of registered) options.answered.set(result.correlationId, result.status);
  if (!registered.every((result) => result.status === 201))
    throw new Error('the ordered models were not registered');
  let stopped = false;
  const lanes = Promise.all(
    models.map((model, lane) =>
      runLoad(options.apiUrl, {
        count: 1_000_000,
        concurrency: 1,
        ratePerSecond: options.ratePerModel ?? 3,
        stop: () => stopped,
        correlationPrefix: `${options.prefix}-lane${lane}`,
        // A new value every time: every update changes the model, so every sequence is new.
        request: (index) => ({
          method: 'PATCH',
          path: `/models/${encodeURIComponent(model)}`,
          headers,
          body: { context_window: 2000 + index },
        }),
        onResult: (result) => {
          if (result.status !== 0) options.answered.set(result.correlationId, result.status);
        },
      }),
    ),
  );
  return {
    async stop() {
      stopped = true;
      await lanes;
    },
    async outOfOrder(pool) {
      const { rows } = await pool.query<{ model_id: string; sequences: number[] }>(
        `SELECT model_id, array_agg(sequence::int ORDER BY id) AS sequences FROM audit_records
          WHERE model_id LIKE $1 AND event_type IN ('model.registered', 'model.updated') GROUP BY model_id`,
        [`${options.prefix}/ordered-%`],
      );
      const inOrder = (sequences: number[]) => sequences.every((sequence, index) => sequence === index + 1);
      const found = new Set(rows.map((row) => row.model_id));
      return [
        ...models.filter((model) => !found.has(model)),
        ...rows.filter((row) => !inOrder(row.sequences)).map((row) => row.model_id),
      ];
    },
  };
}
