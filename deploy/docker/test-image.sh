#!/usr/bin/env bash
# test-image.sh — `make image-test`: build the CPU image of
# deploy/docker/Dockerfile with Debian's podman and run it, on a machine
# that reaches no container registry.
#
# The Dockerfile's stages that pull golang and distroless are replaced:
# `--target host` takes bin/pancap (built here by `make build`) instead of
# the compiling stage, and RUNTIME_IMAGE is a minimal root filesystem made
# here and imported with `podman import`: the libraries `ldd bin/pancap`
# lists (the host's, Debian 12: the glibc of distroless cc-debian12),
# /etc/passwd and /etc/group with the nonroot user 65532, and /tmp.
# Everything else — the USER, ENV, EXPOSE, HEALTHCHECK and ENTRYPOINT — is
# the Dockerfile's own.
#
# Then it checks that the container
#   1. runs as 65532:65532 with `pancap serve` as its entrypoint;
#   2. serves the model mounted read-only at /models on a read-only root
#      file system, answers a Caption call from the host, and serves
#      /metrics and the HTTP API (/v1/models);
#   3. is healthy by its own HEALTHCHECK (`podman healthcheck run`);
#   4. drains and exits 0 on SIGTERM (`podman stop`).
#
# podman runs with runc, cgroupfs, no default ulimits and the host's
# network (the container listens on free loopback ports), from a
# configuration and a vfs image store in a temporary folder that is removed
# at the end: nothing of the machine's own podman setup is used or changed.
# Needs: podman and runc (apt-get install podman runc), bin/pancap.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bin=bin/pancap
for tool in podman runc ldd; do
	command -v "$tool" >/dev/null || { echo "image-test: $tool not found (apt-get install podman runc)" >&2; exit 1; }
done
[[ -x $bin ]] || { echo "image-test: $bin missing: run make build" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pancap-image.XXXXXX")
name=pancap-image-test-$$
cleanup() {
	podman rm -f "$name" >/dev/null 2>&1 || true
	podman rmi -a -f >/dev/null 2>&1 || true
	# vfs layers are plain folders; some are written read-only.
	chmod -R u+w "$work" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = []
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "vfs"
runroot = "$work/run"
graphroot = "$work/graph"
EOF
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_STORAGE_CONF=$work/storage.conf

step() { echo "image-test: $*"; }

# The runtime base: the binary's shared libraries and a nonroot user.
base=$work/base
mkdir -p "$base/etc" "$base/tmp"
chmod 1777 "$base/tmp"
echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$base/etc/passwd"
echo 'nonroot:x:65532:' >"$base/etc/group"
libs=$(ldd "$bin" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}')
for lib in $libs; do
	mkdir -p "$base$(dirname "$lib")"
	cp -L "$lib" "$base$lib"
done
tar -C "$base" -cf "$work/base.tar" .
podman import -q "$work/base.tar" localhost/pancap-runtime-base:test >/dev/null
step "runtime base imported: $(echo $libs | wc -w) libraries from ldd $bin"

t0=$SECONDS
podman build -q --format docker -f deploy/docker/Dockerfile --target host \
	--build-arg RUNTIME_IMAGE=localhost/pancap-runtime-base:test \
	--build-arg GO_IMAGE=localhost/pancap-runtime-base:test \
	-t localhost/pancap:test . >/dev/null
step "built localhost/pancap:test in $((SECONDS - t0)) s"

user=$(podman image inspect --format '{{.Config.User}}' localhost/pancap:test)
entry=$(podman image inspect --format '{{json .Config.Entrypoint}}' localhost/pancap:test)
health=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' localhost/pancap:test)
[[ $user == 65532:65532 ]] || { echo "image-test: FAIL: user $user" >&2; exit 1; }
[[ $entry == '["pancap","serve"]' ]] || { echo "image-test: FAIL: entrypoint $entry" >&2; exit 1; }
[[ $health == *'"pancap","health"'* ]] || { echo "image-test: FAIL: healthcheck $health" >&2; exit 1; }
step "user $user, entrypoint $entry, healthcheck $health"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
grpc=$(free_port)
metrics=$(free_port)
http=$(free_port)
# The check itself runs below with `podman healthcheck run`; podman's
# complaints that it cannot set a systemd timer for it (there is no systemd
# here) go to podman.log.
podman run -d --name "$name" --read-only \
	-v "$root/model/embedded/synth:/models:ro" \
	-e PANCAP_MODEL=/models/llava \
	-e PANCAP_ADDR="127.0.0.1:$grpc" -e PANCAP_METRICS_ADDR="127.0.0.1:$metrics" \
	-e PANCAP_HTTP_ADDR="127.0.0.1:$http" \
	localhost/pancap:test --drain-timeout 10s >/dev/null 2>>"$work/podman.log"
if ! "$bin" health --addr "127.0.0.1:$grpc" --wait 60s >/dev/null; then
	podman logs "$name" >&2
	echo "image-test: FAIL: the container never reported SERVING" >&2
	exit 1
fi
step "container SERVING on 127.0.0.1:$grpc (model mounted read-only, read-only root)"

"$bin" caption --addr "127.0.0.1:$grpc" --json --stages 1 --max-new-tokens 16 testdata/images/shapes.png >"$work/caption.json"
grep -q '"caption"' "$work/caption.json" || { echo "image-test: FAIL: no caption: $(cat "$work/caption.json")" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$metrics/metrics" | grep -q '^pancap_num_requests_running' ||
	{ echo "image-test: FAIL: no pancap metrics on /metrics" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$http/v1/models" | grep -q '"object"' ||
	{ echo "image-test: FAIL: the HTTP API did not list the model" >&2; exit 1; }
step "Caption answered from the host; /metrics and the HTTP API's /v1/models served"

podman healthcheck run "$name" >/dev/null || { echo "image-test: FAIL: HEALTHCHECK unhealthy" >&2; exit 1; }
step "HEALTHCHECK (pancap health inside the container): healthy"

podman stop -t 30 "$name" >/dev/null 2>>"$work/podman.log"
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[[ $code == 0 ]] || { podman logs "$name" >&2; echo "image-test: FAIL: exit code $code after SIGTERM" >&2; exit 1; }
podman logs "$name" 2>&1 | grep -q 'shutting down' || { echo "image-test: FAIL: no drain in the log" >&2; exit 1; }
step "SIGTERM: drained and exited 0"
step "PASS ($((SECONDS)) s)"
