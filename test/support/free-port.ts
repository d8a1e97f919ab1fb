/**
 * Test support: a TCP port on loopback that nothing listens on — bound, then released. A node to start
 * there (the test cluster's), or a dead node to point a URL at (connection refused at once).
 */
import net from 'node:net';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
