# login-ingest: compiled with the dev dependencies, run with the production ones only.
# docker build -t login-ingest .   (or: docker compose build)

# --- build: TypeScript -> dist/ (npm run build also copies the SQL migrations next to migrate.js)
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-build-assets.mjs scripts/
COPY fixtures fixtures
COPY routes routes
COPY src src
RUN npm run build

# --- runtime: production dependencies only. PGlite and the SQS emulator are optional
# dependencies, imported only when DATABASE_URL or SQS_QUEUE_URL is missing, which
# NODE_ENV=production refuses, so they are left out of the image.
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The image's `node` user, by number so Kubernetes' runAsNonRoot can verify it. The app writes
# nothing to disk in production, so the files stay root-owned and the root filesystem can be read-only.
USER 1000:1000
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself as PID 1 (no npm in between), so SIGTERM reaches the service's graceful shutdown.
CMD ["node", "dist/src/server.js"]
