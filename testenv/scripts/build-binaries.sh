#!/usr/bin/env bash
# Builds the lab's binaries from the Go module proxy into a cache outside the repo,
# keyed by component and version, so only the first run on a machine pays for it.
#
#   build-binaries.sh kubernetes v1.37.0   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#   build-binaries.sh etcd v3.5.21          etcd, etcdctl, etcdutl
#   build-binaries.sh kwok v0.8.0           kwok and its stage file
#   build-binaries.sh cfssl v1.6.5          cfssl, cfssljson
#
# Prints the folder holding the binaries on stdout; progress goes to stderr.
set -euo pipefail

component=${1:?component}
version=${2:?version}
source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
out="$cache/bin/$component-$version"
built_or_locked "$out" "lab build"

log() { printf '[lab build] %s\n' "$*" >&2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/mastershrink-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out.tmp"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
cd "$work"

build() { # build PKG NAME [LDFLAGS]
  local start=$SECONDS
  log "building $2 $version (first build takes minutes; cached afterwards in $out)"
  # A ticker so a newcomer sees the build is alive.
  # sleep gets no stdout or stderr: killing the ticker orphans it, and an orphan holding the
  # caller's pipes makes the caller wait for it.
  ( while sleep 30 </dev/null >/dev/null 2>&1; do log "  still building $2 [$((SECONDS - start))s elapsed]"; done ) &
  local ticker=$!
  if ! go build -trimpath -ldflags "-s -w ${3:-}" -o "$out.tmp/$2" "$1" >"$work/$2.log" 2>&1; then
    kill $ticker 2>/dev/null || true
    cat "$work/$2.log" >&2
    log "build of $2 $version failed"
    exit 1
  fi
  kill $ticker 2>/dev/null || true
  log "built $2 in $((SECONDS - start))s"
}

case "$component" in
kubernetes)
  go mod init labbuild >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging_version="v0.${version#v1.}"
  {
    echo "require k8s.io/kubernetes $version"
    # Every staging module is replaced by its published twin of the same minor.
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" |
      awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod
  minor=${version#v1.}; minor=${minor%%.*}
  ld="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    build "k8s.io/kubernetes/cmd/$c" "$c" "$ld"
  done
  ;;
etcd)
  go mod init labbuild >/dev/null 2>&1
  printf 'require (\n go.etcd.io/etcd/server/v3 %s\n go.etcd.io/etcd/etcdctl/v3 %s\n go.etcd.io/etcd/etcdutl/v3 %s\n)\n' "$version" "$version" "$version" >>go.mod
  build go.etcd.io/etcd/server/v3 etcd
  build go.etcd.io/etcd/etcdctl/v3 etcdctl
  build go.etcd.io/etcd/etcdutl/v3 etcdutl
  ;;
kwok)
  go mod init labbuild >/dev/null 2>&1
  echo "require sigs.k8s.io/kwok $version" >>go.mod
  build sigs.k8s.io/kwok/cmd/kwok kwok
  dir=$(go mod download -json "sigs.k8s.io/kwok@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  # kwok needs stage definitions to move fake nodes and pods through their lifecycle: nodes
  # become Ready (node/fast) and keep their conditions fresh next to the node lease kwok
  # renews (heartbeat-with-lease, as kwokctl does), pods become Running and go away (pod/fast).
  # Only Stage documents: the kustomization files are not kwok configuration.
  for f in "$dir"/kustomize/stage/node/fast/*.yaml "$dir"/kustomize/stage/node/heartbeat-with-lease/*.yaml \
    "$dir"/kustomize/stage/pod/fast/*.yaml; do
    grep -q '^kind: Stage' "$f" || continue
    cat "$f"; echo "---"
  done >"$out.tmp/stages.yaml"
  grep -q 'name: node-initialize' "$out.tmp/stages.yaml" && grep -q 'name: pod-ready' "$out.tmp/stages.yaml" || {
    log "kwok $version: node-initialize or pod-ready stage not found under $dir/kustomize/stage"
    exit 1
  }
  ;;
cfssl)
  go mod init labbuild >/dev/null 2>&1
  echo "require github.com/cloudflare/cfssl $version" >>go.mod
  build github.com/cloudflare/cfssl/cmd/cfssl cfssl
  build github.com/cloudflare/cfssl/cmd/cfssljson cfssljson
  ;;
*)
  echo "unknown component $component (want kubernetes, etcd, kwok or cfssl)" >&2
  exit 2
  ;;
esac

touch "$out.tmp/.complete"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
