# syntax=docker/dockerfile:1
#
# orderflow's image: one image for every service; SERVICES picks the modules a container runs
# (docker-compose.yml runs one container per service from it, and a one-shot `setup`).
#
# Built, not yet run as a container: on the machines this project is built on no registry serves the
# base image and no engine starts containers. `deploy/build-image-without-registry.sh` builds this
# file unchanged with podman on a stand-in base (Debian bookworm minbase + the pinned Node and npm,
# 262 MB unpacked): the image is 353 MB, of which orderflow's own layers are 91 MB (production
# node_modules 89 MB, src 1.7 MB); on the official base, add those 91 MB to its size. The image's
# files were run in a chroot as its `node` user: it starts, answers /health/live and the HEALTHCHECK
# command, accepts an order and stops cleanly on SIGTERM.
#
# The Node version is the one the project pins with the `node` npm package (package.json), so the
# image runs the Node the tests ran on. No compile step: Node 24 runs the .ts files as they are.
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: nothing is compiled, so the build needs no dev tool. --ignore-scripts: the only install
# script is the `node` package's, which downloads a second Node for `npm start` on a laptop; the
# image runs its own Node.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
# Where the shared secrets (JWT secret, personal-data key file) and Prometheus' token are mounted:
# a named volume takes the owner and mode of the directory it is mounted on, so the services,
# which run as `node`, can use a fresh volume.
RUN mkdir -p /var/lib/orderflow/keys /var/lib/orderflow/tokens \
    && chown -R node:node /var/lib/orderflow \
    && chmod 700 /var/lib/orderflow/keys
# The application files stay root's: the process cannot change its own code.
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY scripts/setup.ts ./scripts/setup.ts
USER node
EXPOSE 3000
# Liveness, not readiness: an orchestrator that restarts unhealthy containers must not restart a
# process because its database or broker is away (a restart would not bring them back).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, node itself as PID 1: SIGTERM reaches orderflow's graceful shutdown with no shell or
# npm in between (package.json's "start" is the same command).
CMD ["node", "src/main.ts"]
