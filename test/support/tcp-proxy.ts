/**
 * Test support: a TCP proxy to put between the application and RabbitMQ, so fault tests can break the network
 * path of one connection (reset it, or silently drop its traffic) without touching the broker that every
 * other test file shares.
 */
import net from 'node:net';

export interface TcpProxyOptions {
  /** Host to forward connections to. Default '127.0.0.1'. */
  targetHost?: string;
  /** Port to forward connections to, e.g. 5672 for AMQP. */
  targetPort: number;
  /** Port to listen on. Default 0: an ephemeral port, read it from `port`. */
  listenPort?: number;
  /** Interface to listen on. Default '127.0.0.1', so nothing off the machine can use the proxy. */
  listenHost?: string;
}

export interface TcpProxy {
  /** The port the proxy listens on. */
  readonly port: number;
  /** `amqpUrl` with its host and port replaced by the proxy's; credentials, vhost and query are kept. */
  url(amqpUrl: string): string;
  /**
   * Resets every current connection on both sides (RST, as after a network failure); the proxy keeps
   * accepting new connections.
   */
  cut(): void;
  /**
   * While on, every byte in either direction is read and discarded, and no FIN or RST is passed on, as in a
   * network partition: both ends believe the connection is up until their heartbeats say otherwise. New
   * connections are accepted and black-holed too. A connection whose other end closed during the partition is
   * reset when it is turned off, as the first packet after a partition heals would be.
   *
   * Unlike a real partition, after which TCP retransmits, the bytes are lost rather than delayed: a connection
   * that carried traffic while black-holed may be out of step afterwards (a reply that never comes, a frame cut
   * short), by which time its heartbeats should have made both ends give up on it anyway.
   */
  blackhole(on: boolean): void;
  /** Proxied connections not yet torn down by either end or by the proxy. */
  connections(): number;
  /** Stops listening, resets every connection and resolves once all sockets are closed. */
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** One end closed while black-holed: the other is reset when the partition heals. */
  brokenDuringBlackhole: boolean;
  done: boolean;
}

export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const targetHost = options.targetHost ?? '127.0.0.1';
  const listenHost = options.listenHost ?? '127.0.0.1';
  const pairs = new Set<Pair>();
  const sockets = new Set<net.Socket>();
  const socketsClosed = new Set<Promise<void>>();
  let blackholed = false;

  function track(socket: net.Socket): void {
    sockets.add(socket);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socketsClosed.add(closed);
    socket.once('close', () => {
      sockets.delete(socket);
      socketsClosed.delete(closed);
    });
  }

  function tearDown(pair: Pair): void {
    if (pair.done) return;
    pair.done = true;
    pairs.delete(pair);
    resetSocket(pair.client);
    resetSocket(pair.upstream);
  }

  // Forwards by hand rather than with pipe(), which could not drop bytes or hold back an end on demand.
  function forward(pair: Pair, from: net.Socket, to: net.Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (blackholed || pair.done) return;
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => {
      if (pair.done) return;
      if (blackholed) pair.brokenDuringBlackhole = true;
      else to.end();
    });
    from.on('close', () => {
      if (pair.done) return;
      if (blackholed) {
        pair.brokenDuringBlackhole = true;
        // Both ends gave up (heartbeat timeouts, typically): nothing is left to reset when the partition heals.
        if (to.destroyed) finish(pair);
      } else if (from.readableEnded && to.readableEnded) {
        // Both FINs passed through: a clean close, and the other socket is closing by itself.
        finish(pair);
      } else {
        // An error or a reset: the other end sees a reset too, as it would with no proxy in between.
        tearDown(pair);
      }
    });
  }

  function finish(pair: Pair): void {
    if (pair.done) return;
    pair.done = true;
    pairs.delete(pair);
  }

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    track(client);
    // allowHalfOpen on both sockets: the proxy, not Node, decides when a FIN is passed on, so one can be
    // held back while black-holed.
    const upstream = net.connect({ host: targetHost, port: options.targetPort, allowHalfOpen: true });
    track(upstream);
    const pair: Pair = { client, upstream, brokenDuringBlackhole: false, done: false };
    pairs.add(pair);
    // Errors end in 'close', which decides what to do; without listeners they would crash the test process.
    client.on('error', () => {});
    upstream.on('error', () => {});
    forward(pair, client, upstream);
    forward(pair, upstream, client);
    // Bytes the client sends before the upstream connection is up are buffered by upstream.write.
    client.resume();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, listenHost, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  let closing: Promise<void> | undefined;

  return {
    port,
    url(amqpUrl) {
      const url = new URL(amqpUrl);
      url.hostname = listenHost === '0.0.0.0' ? '127.0.0.1' : listenHost;
      url.port = String(port);
      return url.toString();
    },
    cut() {
      for (const pair of [...pairs]) tearDown(pair);
    },
    blackhole(on) {
      blackholed = on;
      if (on) return;
      for (const pair of [...pairs]) {
        if (pair.brokenDuringBlackhole) tearDown(pair);
      }
    },
    connections() {
      return pairs.size;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const pair of [...pairs]) tearDown(pair);
        for (const socket of sockets) resetSocket(socket);
        await Promise.all([stopped, ...socketsClosed]);
      })();
      return closing;
    },
  };
}

/**
 * Closes with an RST rather than a FIN, so the peer sees ECONNRESET as after a real network failure.
 * A socket still sending its FIN (end() called, the shutdown not finished) is destroyed instead: libuv
 * refuses to reset a socket that is shutting down (EINVAL), and Node then never emits 'close' for it, so
 * close() would wait for ever (its peer has the FIN already).
 */
export function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.writableEnded && !socket.writableFinished) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}
