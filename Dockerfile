# InferenceFlow gateway image: build with the full toolchain, run on a slim Node 20 as a non-root user.
#   docker build -t inferenceflow .
#   docker run -p 8080:8080 -e TRUTHGPT_API_TOKEN=change-me-please inferenceflow
# Optional dependencies (node-llama-cpp, transformers, the 294 MB embedding table) are left out by
# default to keep the image small; build with --build-arg NPM_OMIT= to include them.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ARG NPM_OMIT=optional
COPY package.json package-lock.json ./
# Everything, optional dependencies included: tsc needs their types (src/providers/local*.ts import
# node-llama-cpp's, the transformers embedder @huggingface/transformers'); the prune below drops
# them again. No install scripts: nothing the gateway needs builds native code, and it keeps the
# build hermetic (the types need none).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev ${NPM_OMIT:+--omit=$NPM_OMIT} --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
# A 64 MiB young generation for every process (gateway, mesh router and worker): with hundreds of
# concurrent streams per process, V8's 16 MiB default spends about twice the time in scavenges
# (docs/scaling.md). `serve --workers` adds it to its workers itself when NODE_OPTIONS has none.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    NODE_OPTIONS=--max-semi-space-size=64
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./package.json
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --chown=node:node config ./config
# The embedded PGlite ledger lives here when DATABASE_URL is unset; mount a volume to keep it.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve"]
