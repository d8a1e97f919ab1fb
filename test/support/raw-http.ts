/**
 * Test support: HTTP/1.1 spoken by hand over a TCP socket, for what no well-behaved client sends — a
 * body shorter than its content-length, headers that never end, bare LF line endings, CONNECT.
 */
import net from 'node:net';

export interface RawExchange {
  /** Everything the server wrote before it closed, as text. */
  response: string;
  /** The status of the response, if there was one. */
  status: number | undefined;
  /** The JSON body of the response, if it had one. */
  body: unknown;
  /** Time from connecting to the server closing the connection, in ms; undefined if it did not by the deadline. */
  closedAfterMs: number | undefined;
}

export interface RawOptions {
  /** Stop waiting for the server to close after this long, in ms. @default 10_000 */
  timeoutMs?: number;
  /** Further chunks, each written after `intervalMs` (trickled headers). */
  trickle?: string[];
  /** @default 200 */
  intervalMs?: number;
}

/** Connects, writes `request` (and any trickle), and waits for the server to close or the deadline. */
export function rawExchange(
  port: number,
  request: string | Buffer,
  options: RawOptions = {},
): Promise<RawExchange> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timers: NodeJS.Timeout[] = [];
    const finish = (closed: boolean) => {
      for (const timer of timers) clearTimeout(timer);
      socket.destroy();
      const response = Buffer.concat(chunks).toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(response)?.[1];
      const separator = response.indexOf('\r\n\r\n');
      let body: unknown;
      try {
        body = separator < 0 ? undefined : JSON.parse(response.slice(separator + 4));
      } catch {
        body = undefined;
      }
      resolve({
        response,
        status: status === undefined ? undefined : Number(status),
        body,
        closedAfterMs: closed ? performance.now() - started : undefined,
      });
    };
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      socket.write(request);
      (options.trickle ?? []).forEach((chunk, index) => {
        timers.push(
          setTimeout(() => socket.writable && socket.write(chunk), (index + 1) * (options.intervalMs ?? 200)),
        );
      });
    });
    timers.push(setTimeout(() => finish(false), options.timeoutMs ?? 10_000));
  });
}

/** Opens a connection and keeps it, sending nothing; resolves once connected. */
export function idleConnection(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}
