# syntax=docker/dockerfile:1
# agent-events: build, then a runtime image with production dependencies only, run as the
# unprivileged `node` user under tini (PID 1 reaps zombies and forwards SIGTERM to node, which
# drains and exits within SHUTDOWN_TIMEOUT_MS). Node is the version in .node-version (a test
# keeps them equal). Reference: docs/deploy.md.
ARG NODE_VERSION=26.12.1

# 1. Compile TypeScript (dev dependencies live only in this stage).
FROM node:${NODE_VERSION}-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
RUN npm run build

# 2. Production dependencies only, without install scripts (none of them needs one).
FROM node:${NODE_VERSION}-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# 3. The runtime image.
FROM node:${NODE_VERSION}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs
# The CLI on PATH: `docker compose exec agent-events agent-events keys create --project demo`.
RUN ln -s /app/dist/src/cli/main.js /usr/local/bin/agent-events
# Files stay root's (read-only to the service); the service writes nothing to disk.
USER node
EXPOSE 8080
# Ready = the store answers (GET /readyz); a small node script, as slim images have no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "/app/deploy/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/src/main.js"]
