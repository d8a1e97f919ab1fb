/**
 * One AMQP connection to one node, the way every part of the bus needs it: with heartbeats (a dead or
 * black-holed peer is noticed within about two intervals), a bound on the whole connect-and-handshake,
 * and a name that shows in the management UI; and a close that always ends. Each process opens one for
 * publishing and one for consuming, never sharing them, so a blocked publisher can never stall
 * consumption. Which node, and what to do when it fails: ./broker-session.ts, through which every
 * connection of the application is opened.
 */
import { hostname } from 'node:os';
import amqp, { type ChannelModel } from 'amqplib';
import { withTimeout } from '../with-timeout.ts';

export interface BrokerConnectionOptions {
  /** AMQP heartbeat interval, in seconds. @default 5 */
  heartbeatSeconds?: number;
  /** Time allowed for the TCP connect and the AMQP handshake, in milliseconds. @default 5000 */
  connectTimeoutMs?: number;
  /** Shown as the connection's name in the management UI, e.g. `telemetry-bus publisher`. */
  name: string;
}

/** The URL with a heartbeat, unless the URL already asks for one. */
export function withHeartbeat(url: string, heartbeatSeconds: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(heartbeatSeconds));
  return parsed.toString();
}

/** The underlying socket, destroyed to drop a connection that will never answer a graceful close. */
export function destroyConnection(connection: ChannelModel): void {
  const internal = connection as unknown as { connection?: { stream?: { destroy(error?: Error): void } } };
  internal.connection?.stream?.destroy();
}

/**
 * Closes gracefully (Connection.Close, then its CloseOk) within `timeoutMs` in ms (default 2000), then
 * destroys the socket whatever happened; never rejects. amqplib's close() never settles when the socket
 * dies mid-close (the broker stopped, the network cut): it waits for a CloseOk that cannot come, so the
 * connection's own 'close' ends the wait too.
 */
export async function closeConnection(connection: ChannelModel, timeoutMs = 2000): Promise<void> {
  // A reset during the close is the close's business: it must not surface as an unhandled 'error'.
  connection.on('error', () => {});
  const closed = new Promise<void>((resolve) => connection.once('close', () => resolve()));
  await withTimeout(Promise.race([connection.close(), closed]), timeoutMs).catch(() => {});
  destroyConnection(connection);
}

/**
 * Opens a connection to the node at `url`. amqplib's own `timeout` is a socket inactivity time-out, which
 * a peer answering slowly byte by byte would never trip: the whole connect is bounded here too, and a
 * connection that opens after the time-out is closed at once.
 */
export async function connectToBroker(url: string, options: BrokerConnectionOptions): Promise<ChannelModel> {
  const timeoutMs = options.connectTimeoutMs ?? 5000;
  const connecting = amqp.connect(withHeartbeat(url, options.heartbeatSeconds ?? 5), {
    timeout: timeoutMs,
    clientProperties: { connection_name: `${options.name} ${hostname()}:${process.pid}` },
  });
  try {
    return await withTimeout(connecting, timeoutMs, `connect: no AMQP handshake within ${timeoutMs} ms`);
  } catch (error) {
    connecting.then(destroyConnection, () => {});
    throw error;
  }
}
