/**
 * Why a batch cannot finish now: the connection went, or the runtime is stopping. Not the message's
 * fault: the batch is left unacknowledged and the broker redelivers it on the next channel.
 */
export class AbandonBatch extends Error {}
