/**
 * While the server drains for shutdown, requests in flight finish and their connections close, and a
 * request that still arrives on an open connection gets a 503 in the API's error format (with
 * `connection: close`), through the normal hooks, so that it is answered and observed like any other.
 * (Fastify's own `return503OnClosing` answers past every hook, in its own format.)
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../../errors.ts';

export default fp(
  async function closingGuard(app: FastifyInstance) {
    let closing = false;
    app.addHook('preClose', async () => {
      closing = true;
    });
    // Callback-style hooks: they run on every request, and an async one costs a promise each time.
    app.addHook('onRequest', (_request, reply, done) => {
      if (!closing) return done();
      reply.header('connection', 'close');
      done(new AppError('SERVICE_UNAVAILABLE', 'the server is shutting down; retry on another instance'));
    });
    // A response finished while draining closes its connection: otherwise a client that kept it alive
    // would hold the shutdown until its keep-alive timeout.
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (closing) reply.header('connection', 'close');
      done(null, payload);
    });
  },
  { name: 'closing-guard', dependencies: ['error-handler'] },
);
