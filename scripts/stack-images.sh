#!/usr/bin/env bash
# Build the images the compose stack needs on a machine that cannot pull: the substitutes for the third-party
# images (driftloop/{postgres,redis,prometheus,nginx}:local, FROM the local python:3.11-slim + Debian packages)
# and the project image (driftloop/project:local). Idempotent; a warm rebuild takes seconds.
#   scripts/stack-images.sh [substitutes|project|all]      (default: all)
# Prints one "built <image> in <s>s (<size>)" line per image. Never pulls: the base must already be local
# (../shared/ci/build-base-image.sh makes one).
set -euo pipefail
cd "$(dirname "$0")/.."

# One build at a time on this machine: a second call (the compose tests, while .ci/run's early build still runs)
# waits, then finds every layer built, instead of building the same layers beside it.
exec 9>"${TMPDIR:-/tmp}/driftloop-stack-images.lock"
flock 9

what="${1:-all}"
docker image inspect python:3.11-slim >/dev/null 2>&1 \
  || { echo "stack-images: no local python:3.11-slim image (see deployments/README.md)" >&2; exit 1; }

build() {  # build <tag> <context> [dockerfile]
  local tag="$1" context="$2" dockerfile="${3:-$2/Dockerfile}" started log
  [ -f "$dockerfile" ] || { echo "stack-images: $dockerfile is missing" >&2; return 1; }
  started=$(date +%s.%N)
  log="$(mktemp)"
  if ! docker build --network host --force-rm -f "$dockerfile" -t "$tag" "$context" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    echo "stack-images: building $tag failed" >&2
    return 1
  fi
  rm -f "$log"
  printf 'built %s in %.1fs (%s)\n' "$tag" "$(echo "$(date +%s.%N) - $started" | bc)" \
    "$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}

if [ "$what" = substitutes ] || [ "$what" = all ]; then
  for name in postgres redis prometheus nginx; do
    build "driftloop/$name:local" "deployments/substitutes/$name"
  done
fi
if [ "$what" = project ] || [ "$what" = all ]; then
  build driftloop/project:local . deployments/project/Dockerfile
fi
