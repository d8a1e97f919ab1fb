# telemetry-bus: the Model Registry API. A build stage compiles src/ to dist/ with tsc (the dev
# dependencies stay there); the image is the production dependencies plus dist/, bin/ and migrations/, run
# by plain Node (bin/telemetry-bus.js runs dist/ when there are no sources beside it).
FROM node:20-slim AS build

WORKDIR /app

# Dependencies first, so that a change to the sources does not reinstall them. No scripts: the prepare
# script (the build) needs the sources, which come next.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-slim

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080

WORKDIR /app

# --ignore-scripts: the prepare script builds, which the build stage did; no production dependency needs
# its install script on plain Node (esbuild's, under tsx, only checks its binary).
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY migrations ./migrations
COPY --from=build /app/dist ./dist

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
