/**
 * The e2e request mix's events (e2e-mix.ts) as the publisher sends them, distinct messages in the mix's
 * proportions: what the raw broker loops that are compared with the service publish.
 */
import type { OutboundMessage } from '../../src/bus/outbound-message.ts';
import { BLOCK_EVENT_TYPES } from './e2e-mix.ts';
import { buildEmitCalls, messageOf } from './events.ts';

export const mixMessages = (count: number): OutboundMessage[] =>
  buildEmitCalls(count, BLOCK_EVENT_TYPES, BLOCK_EVENT_TYPES.length).map(messageOf);
