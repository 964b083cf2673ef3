# syntax=docker/dockerfile:1
# tidemark agent: runs beside one on-prem PostgreSQL database and syncs its tracked tables.
#
#   docker build -f deploy/docker/agent.Dockerfile -t tidemark-agent .
#   docker run -e TIDEMARK_DATABASE_URL=postgres://... -e TIDEMARK_SERVER_URL=https://... \
#     -e TIDEMARK_CLIENT_ID=acme -e TIDEMARK_DATABASE_ID=... -e TIDEMARK_API_KEY=tmk_... tidemark-agent
#   (or mount a config file: -v /etc/tidemark:/etc/tidemark:ro ... tidemark-agent agent --config /etc/tidemark/agent.yaml)
#
# The same three stages as server.Dockerfile: build, production dependencies only, and a runtime
# image running as the unprivileged `node` user. The agent keeps its state in the local database,
# so the container needs no volume. Run one agent per database.
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` builds, and the sources are not there yet.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
# The agent's /metrics on all interfaces of the container (Prometheus scrapes it from outside).
ENV NODE_ENV=production \
    TIDEMARK_METRICS_LISTEN=0.0.0.0:9465
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY config ./config
USER node
EXPOSE 9465
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["agent"]
