# telemetry-bus: the Model Registry API. There is no build step: tsx (a runtime dependency) loads the
# TypeScript sources, so the image is the production dependencies plus src/, bin/ and migrations/.
FROM node:20-slim

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080

WORKDIR /app

# Dependencies first, so that a change to the sources does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
COPY tsconfig.json ./

# The event spool is the one thing the process writes: a directory of its own, on a volume, so that
# events spooled while RabbitMQ was down survive the container being replaced.
RUN mkdir -p /var/lib/telemetry-bus && chown node:node /var/lib/telemetry-bus
ENV DATA_DIR=/var/lib/telemetry-bus
VOLUME /var/lib/telemetry-bus

# The image's unprivileged user (uid 1000); the files stay root-owned and read-only to it.
USER node

EXPOSE 8080

# Ready means PostgreSQL answers (/readyz gives 503 otherwise); fetch is built into Node 20.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

CMD ["node", "bin/telemetry-bus.js", "start"]
