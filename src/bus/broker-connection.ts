/**
 * One AMQP connection to one node, the way every part of the bus needs it: with heartbeats (a dead or
 * black-holed peer is noticed within two intervals), a bound on the whole connect-and-handshake,
 * and a name that shows in the management UI; and a close that always ends. Each process opens one for
 * publishing and one for consuming, never sharing them, so a blocked publisher can never stall
 * consumption. Which node, and what to do when it fails: ./broker-session.ts, through which every
 * connection of the application is opened.
 */
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import amqp, { type ChannelModel } from 'amqplib';
import { withTimeout } from '../with-timeout.ts';

/** The defaults of a broker connection, which the session, the publisher and the consumers take too. */
export const BROKER_CONNECTION_DEFAULTS = {
  /** AMQP heartbeat interval, in seconds: a dead connection is detected within about twice this. */
  heartbeatSeconds: 5,
  /** Time allowed for the TCP connect and the AMQP handshake, in milliseconds. */
  connectTimeoutMs: 5000,
} as const;

export interface BrokerConnectionOptions {
  /** AMQP heartbeat interval, in seconds. @default {@link BROKER_CONNECTION_DEFAULTS} */
  heartbeatSeconds?: number;
  /** Time allowed for the TCP connect and the AMQP handshake, in ms. @default {@link BROKER_CONNECTION_DEFAULTS} */
  connectTimeoutMs?: number;
  /** Shown as the connection's name in the management UI, e.g. `telemetry-bus publisher`. */
  name: string;
}

/** The vhost an AMQP URL names ('/' when none). */
export function vhostOf(amqpUrl: string): string {
  const path = new URL(amqpUrl).pathname;
  return path.length > 1 ? decodeURIComponent(path.slice(1)) : '/';
}

/** The URL with a heartbeat, unless the URL already asks for one. */
export function withHeartbeat(url: string, heartbeatSeconds: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(heartbeatSeconds));
  return parsed.toString();
}

/** What of amqplib's connection this module reaches into: the socket and the negotiated heartbeat. */
interface ConnectionInternals {
  connection?: { stream?: Socket; heartbeat?: number };
}

/**
 * Drops a connection that will never answer a graceful close (or that nobody wants: one that opened
 * after its connect timed out). The socket is destroyed with an error, because amqplib ends a
 * connection only on a socket 'error' or 'end', never on a bare 'close': without one its heartbeat
 * intervals (ref'd timers) ran on until the heartbeat time-out, which then emitted an 'error' that,
 * unheard, was an uncaught exception, and the intervals kept the process alive for ever. The error is
 * heard here: dropping the connection was the caller's decision.
 */
export function destroyConnection(connection: ChannelModel): void {
  connection.on('error', () => {});
  (connection as unknown as ConnectionInternals).connection?.stream?.destroy(
    new Error('connection dropped by this process'),
  );
}

/**
 * Drops the connection once nothing has come from the broker for two heartbeat intervals: at most two
 * intervals after the last byte, checked every eighth of one (or 250 ms). The broker sends a heartbeat
 * every half interval when it has nothing else to send, so that is about four missed heartbeats.
 * amqplib's own check runs once per interval and notices only two to three intervals after the last
 * frame: a partitioned node would cost up to half as much again.
 *
 * It reads the socket's byte count, adding no listener to the stream amqplib reads. A tick that comes
 * late (this process stalled, with bytes perhaps waiting unread in the socket) restarts the count
 * rather than judge the silence.
 */
function dropWhenSilent(connection: ChannelModel): void {
  const internals = (connection as unknown as ConnectionInternals).connection;
  const socket = internals?.stream;
  const heartbeatSeconds = internals?.heartbeat ?? 0;
  if (socket === undefined || heartbeatSeconds <= 0) return;
  // An eighth of an interval, but not so short that a busy process's timers count as stalls.
  const tickMs = Math.max(250, (heartbeatSeconds * 1000) / 8);
  const limitMs = 2 * heartbeatSeconds * 1000 - tickMs;
  let bytes = socket.bytesRead;
  let heardAt = Date.now();
  let tickedAt = heardAt;
  const timer = setInterval(() => {
    const now = Date.now();
    const late = now - tickedAt > 2 * tickMs;
    tickedAt = now;
    if (socket.bytesRead !== bytes || late) {
      bytes = socket.bytesRead;
      heardAt = now;
    } else if (now - heardAt >= limitMs) {
      clearInterval(timer);
      socket.destroy(
        new Error(
          `nothing from RabbitMQ for ${now - heardAt} ms (heartbeat ${heartbeatSeconds} s): connection dropped`,
        ),
      );
    }
  }, tickMs);
  timer.unref();
  socket.once('close', () => clearInterval(timer));
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
  const timeoutMs = options.connectTimeoutMs ?? BROKER_CONNECTION_DEFAULTS.connectTimeoutMs;
  const heartbeatSeconds = options.heartbeatSeconds ?? BROKER_CONNECTION_DEFAULTS.heartbeatSeconds;
  const connecting = amqp.connect(withHeartbeat(url, heartbeatSeconds), {
    timeout: timeoutMs,
    clientProperties: { connection_name: `${options.name} ${hostname()}:${process.pid}` },
  });
  try {
    const connection = await withTimeout(
      connecting,
      timeoutMs,
      `connect: no AMQP handshake within ${timeoutMs} ms`,
    );
    dropWhenSilent(connection);
    return connection;
  } catch (error) {
    connecting.then(destroyConnection, () => {});
    throw error;
  }
}
