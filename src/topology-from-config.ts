/**
 * The topology of a deployment, from its configuration: the retry ladder, the partitions and where new
 * queues go in a cluster. Every process (API, worker, CLI) builds it here, so they all declare, consume
 * and replay into the same queues.
 */

import { buildTopology, QUEUES, type Topology } from './bus/topology.ts';
import type { Config } from './config.ts';

export function topologyFromConfig(
  config: Pick<Config, 'retryDelaysMs' | 'auditPartitions' | 'quorumInitialGroupSize' | 'queueLeaderLocator'>,
): Topology {
  return buildTopology({
    retryDelaysMs: config.retryDelaysMs,
    partitions: { [QUEUES.audit]: config.auditPartitions },
    placement: {
      initialGroupSize: config.quorumInitialGroupSize ?? undefined,
      leaderLocator: config.queueLeaderLocator ?? undefined,
    },
  });
}
