# syntax=docker/dockerfile:1
# tidemark server: the multi-tenant REST API over the cloud PostgreSQL.
#
#   docker build -f deploy/docker/server.Dockerfile -t tidemark-server .
#   docker run -e TIDEMARK_DATABASE_URL=postgres://... -e TIDEMARK_ADMIN_KEY=... -p 8080:8080 tidemark-server
#
# Three stages: build (compiles TypeScript with the dev dependencies), deps (production
# dependencies only: no compiler, no test runner, no embedded PostgreSQL), and the runtime image
# with the two, running as the unprivileged `node` user. Node 22: the project runs on Node 20.19+
# and 22 is the oldest line still maintained.
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
ENV NODE_ENV=production \
    TIDEMARK_LISTEN=0.0.0.0:8080
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY config ./config
USER node
EXPOSE 8080
# /healthz answers while the process runs; /readyz also needs the database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["server"]
