#!/usr/bin/env bash
# Builds orderflow's image where the Node base image cannot be pulled (no route to Docker Hub) and
# no container engine runs. A stand-in for node:<version>-bookworm-slim is made from Debian bookworm
# (debootstrap, minbase variant), the Node the project pins (npm's `node` package, already in
# node_modules) and this machine's npm, and tagged with the official name; the Dockerfile is then
# built on it unchanged by podman with chroot isolation (buildah runs no container for RUN steps).
#
#   sudo apt-get install debootstrap podman && npm ci && sudo deploy/build-image-without-registry.sh
#
# The stand-in is not the official image (a few MB larger: apt and friends stay), so the size it
# gives is an upper bound for the real one. When NODE_EXTRA_CA_CERTS is set (a TLS-inspecting proxy
# between this machine and the npm registry), that bundle is put in the stand-in so `npm ci` in the
# build trusts the same certificates.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(grep -m1 '^ARG NODE_VERSION=' Dockerfile | cut -d= -f2)
node_bin=node_modules/node/bin/node
[ "$("$node_bin" --version)" = "v$version" ] || { echo "node_modules has not Node $version: run npm ci" >&2; exit 1; }
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
base=docker.io/library/node:${version}-bookworm-slim
root=$(mktemp -d /tmp/orderflow-base-XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "building a stand-in for $base in $root"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
cp "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
changes=(--change 'CMD ["node"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp "$NODE_EXTRA_CA_CERTS" "$root/etc/ssl/certs/extra-ca-certificates.crt"
  changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/extra-ca-certificates.crt')
fi
tar -C "$root" -c . | podman import "${changes[@]}" - "$base" >/dev/null

echo "building localhost/orderflow:local from the Dockerfile"
podman build --format docker --isolation chroot --pull=never -t localhost/orderflow:local .
for image in "$base" localhost/orderflow:local; do
  podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image"
done
