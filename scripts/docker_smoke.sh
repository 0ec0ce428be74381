#!/usr/bin/env bash
# Build the streammat image and check it for real:
#   - it runs as the fixed non-root uid and declares its port, health check and command;
#   - with no network at all (the model must be inside), `streammat process` mattes the
#     sample clip from a mounted volume into it, and the result has every frame and alpha;
#   - SIGTERM reaches streammat through the init: a live recording stops within the grace
#     period and stays playable;
#   - `serve` (when the build has it) reports healthy through the image's HEALTHCHECK,
#     stops on SIGTERM within the grace period and leaves a playable recording.
#
# Usage: scripts/docker_smoke.sh      (needs a running Docker engine)
# Environment:
#   STREAMMAT_IMAGE  tag to build (default streammat:smoke)
#   STREAMMAT_BASE   base image (default python:3.11-slim when present or pullable, else a
#                    local Debian bookworm base made with debootstrap, which needs root)
#   PYTHON           the host Python whose pip finds a local torch wheel (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${STREAMMAT_IMAGE:-streammat:smoke}
BASE=${STREAMMAT_BASE:-}
PYTHON=${PYTHON:-python3}
UPSTREAM_BASE=python:3.11-slim
LOCAL_BASE=local/debian:bookworm
IMAGE_UID=10001
STOP_GRACE_S=10      # docker stop's grace period before SIGKILL: the exit must come sooner
HEALTHY_WAIT_S=300   # the first health check waits for the service to load its model
SAMPLE_S=5           # seconds of sample clip (30 frames/s)
RECORD_S=5           # seconds a recording runs, once its first frames are written, before SIGTERM
NAME=streammat-smoke-$$
WORK=""

say() { echo "docker_smoke: $*"; }
fail() {
    echo "docker_smoke: FAIL: $*" >&2
    exit 1
}

cleanup() {
    docker rm -f "$NAME-live" "$NAME-serve" > /dev/null 2>&1 || true
    if [[ -n $WORK && -d $WORK ]]; then
        # files written by the container's uid are removed by that uid
        docker run --rm --network none -v "$WORK:/data" --entrypoint /bin/sh "$IMAGE" \
            -c 'rm -rf /data/* /data/.[!.]*' > /dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

docker info > /dev/null 2>&1 || fail "no Docker engine answers (start dockerd, or check DOCKER_HOST)"

# A minimal Debian bookworm made here, for machines that cannot reach Docker Hub. It has no
# Python: the Dockerfile then takes Debian's python3 (3.11, as python:3.11-slim).
make_local_base() {
    command -v debootstrap > /dev/null || fail "$UPSTREAM_BASE cannot be pulled and debootstrap is missing"
    [[ $(id -u) == 0 ]] || fail "$UPSTREAM_BASE cannot be pulled and making a local base needs root"
    local mirror rootfs
    mirror=$(grep -rhoE 'https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2> /dev/null \
        | grep -v security | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d)
    say "making $LOCAL_BASE with debootstrap from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > /dev/null
    tar -C "$rootfs" -c . | docker import - "$LOCAL_BASE" > /dev/null
    rm -rf "$rootfs"
}

if [[ -z $BASE ]]; then
    if docker image inspect "$UPSTREAM_BASE" > /dev/null 2>&1 \
        || timeout 60 docker pull -q "$UPSTREAM_BASE" > /dev/null 2>&1; then
        BASE=$UPSTREAM_BASE
    else
        docker image inspect "$LOCAL_BASE" > /dev/null 2>&1 || make_local_base
        BASE=$LOCAL_BASE
    fi
fi

# Local files the build uses when they exist: the CPU torch wheel where pip has it on disk
# (no download: --no-index), and the CA bundle pip is told to trust on this host.
build_args=(--build-arg "BASE=$BASE")
if ! compgen -G "docker/local/torch-*.whl" > /dev/null; then
    "$PYTHON" -m pip download -q torch==2.13.0 --no-deps --no-index -d docker/local > /dev/null 2>&1 || true
fi
cert=${PIP_CERT:-$("$PYTHON" -m pip config get global.cert 2> /dev/null || true)}
if [[ -n $cert && -f $cert ]]; then
    cp "$cert" docker/local/ca-certificates.crt
    build_args+=(--build-arg PIP_CERT=/tmp/local/ca-certificates.crt)
fi

say "building $IMAGE from $BASE"
start=$SECONDS
docker build --network host "${build_args[@]}" -t "$IMAGE" . > /tmp/"$NAME"-build.log 2>&1 \
    || {
        tail -n 30 /tmp/"$NAME"-build.log >&2
        fail "docker build failed (log: /tmp/$NAME-build.log)"
    }
rm -f /tmp/"$NAME"-build.log
say "built in $((SECONDS - start)) s; size $(docker image ls "$IMAGE" --format '{{.Size}}')"

# The image's declared contract.
[[ $(docker image inspect -f '{{.Config.User}}' "$IMAGE") == "$IMAGE_UID:$IMAGE_UID" ]] \
    || fail "image user is not $IMAGE_UID:$IMAGE_UID"
[[ $(docker run --rm --network none --entrypoint id "$IMAGE" -u) == "$IMAGE_UID" ]] \
    || fail "the container does not run as uid $IMAGE_UID"
[[ $(docker image inspect -f '{{json .Config.Cmd}}' "$IMAGE") == '["serve","/config/serve.yaml"]' ]] \
    || fail "default command is not serve /config/serve.yaml"
[[ $(docker image inspect -f '{{json .Config.ExposedPorts}}' "$IMAGE") == *'"9100/tcp"'* ]] \
    || fail "port 9100 is not exposed"
[[ $(docker image inspect -f '{{if .Config.Healthcheck}}yes{{end}}' "$IMAGE") == yes ]] \
    || fail "no HEALTHCHECK"
say "runs as uid $IMAGE_UID; EXPOSE 9100, HEALTHCHECK, CMD serve /config/serve.yaml"

WORK=$(mktemp -d)
chmod 0777 "$WORK" # the image's uid writes here, as into any volume granted to it
run() { docker run --rm --network none -v "$WORK:/data" "$@"; }

# Prints "FRAMES PIX_FMT ALPHA_MIN ALPHA_MAX" of an alpha video, decoded in the image.
probe() {
    # shellcheck disable=SC2016
    run --entrypoint python3 "$IMAGE" -c '
import sys, av
with av.open(sys.argv[1]) as c:
    s = c.streams.video[0]
    n, lo, hi, fmt = 0, 255, 0, s.codec_context.pix_fmt
    for f in c.decode(s):
        a = f.to_ndarray(format="rgba")[..., 3]
        n, lo, hi = n + 1, min(lo, int(a.min())), max(hi, int(a.max()))
print(n, fmt, lo, hi)' "$1"
}

# A clip with an alpha matte: every expected frame, and an alpha that is neither empty nor full.
check_video() { # PATH_IN_DATA MIN_FRAMES
    local frames fmt lo hi
    read -r frames fmt lo hi < <(probe "$1") || fail "$1 cannot be decoded"
    ((frames >= $2)) || fail "$1 has $frames frames, expected at least $2"
    ((lo < 128 && hi > 128)) || fail "$1 has no matte (alpha $lo..$hi)"
    say "$1: $frames frames, $fmt, alpha $lo..$hi"
}

# Stops a container with SIGTERM and a grace period; it must exit by itself in time.
stop_in_time() { # CONTAINER
    local t0 code
    t0=$(date +%s.%N)
    docker stop --time "$STOP_GRACE_S" "$1" > /dev/null
    local took
    took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    code=$(docker inspect -f '{{.State.ExitCode}}' "$1")
    [[ $code != 137 ]] || fail "$1 ignored SIGTERM and was killed after ${STOP_GRACE_S} s"
    say "$1 stopped by SIGTERM in $took s (exit code $code)"
}

# A stopped recording is finalized under its name or, where the command counts the stop as
# an interruption, as NAME.partial.EXT; either must play. Prints the one found.
stopped_recording() { # PATH_IN_DATA
    local partial="${1%.*}.partial.${1##*.}"
    for path in "$1" "$partial"; do
        [[ -e $WORK/${path#/data/} ]] && echo "$path" && return
    done
    fail "no recording at $1 (nor $partial)"
}

# The sample clip, made inside the image (it has everything the sample needs); 5 s of it
# keep the run short on a busy machine.
run "$IMAGE" sample /data/sample.mp4 --seconds "$SAMPLE_S" > /dev/null || fail "streammat sample failed"

say "process: sample clip -> /data/out.mov, --network none"
start=$SECONDS
run --no-healthcheck "$IMAGE" process /data/sample.mp4 -o /data/out.mov --codec prores \
    || fail "streammat process failed in the container"
say "processed in $((SECONDS - start)) s"
[[ $(stat -c %u "$WORK/out.mov") == "$IMAGE_UID" ]] || fail "out.mov is not owned by uid $IMAGE_UID"
check_video /data/out.mov $((SAMPLE_S * 30))

# SIGTERM through tini: a live recording of the looped sample, stopped after it started.
docker run -d --name "$NAME-live" --network none --no-healthcheck -v "$WORK:/data" "$IMAGE" \
    live --camera /data/sample.mp4 --loop -o /data/live.mkv > /dev/null
for _ in $(seq 240); do # the recording's temporary file appears with its first frames
    compgen -G "$WORK/.live*" > /dev/null && break
    [[ $(docker inspect -f '{{.State.Running}}' "$NAME-live") == true ]] \
        || fail "live exited early: $(docker logs --tail 5 "$NAME-live" 2>&1)"
    sleep 0.5
done
sleep "$RECORD_S"
stop_in_time "$NAME-live"
recording=$(stopped_recording /data/live.mkv) || exit 1
check_video "$recording" 10

if run --entrypoint streammat "$IMAGE" serve --help > /dev/null 2>&1; then
    say "serve: default command, waiting for the health check"
    mkdir -p "$WORK/recordings" && chmod 0777 "$WORK/recordings" # the config's output folder
    docker run -d --name "$NAME-serve" --network none -v "$WORK:/data" "$IMAGE" > /dev/null
    status=starting
    for _ in $(seq "$HEALTHY_WAIT_S"); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$NAME-serve")
        [[ $status == starting ]] || break
        [[ $(docker inspect -f '{{.State.Running}}' "$NAME-serve") == true ]] \
            || fail "serve exited: $(docker logs --tail 5 "$NAME-serve" 2>&1)"
        sleep 1
    done
    [[ $status == healthy ]] || fail "serve is $status: $(docker logs --tail 5 "$NAME-serve" 2>&1)"
    say "serve is healthy"
    sleep "$RECORD_S"
    stop_in_time "$NAME-serve"
    recording=$(stopped_recording /data/recordings/sample.mkv) || exit 1
    check_video "$recording" 10
else
    say "skipped: serve not available in this build"
fi

say "passed ($IMAGE, $(docker image ls "$IMAGE" --format '{{.Size}}'))"
