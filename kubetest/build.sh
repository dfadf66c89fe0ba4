#!/usr/bin/env bash
# Builds the real Kubernetes control plane for the kube test tier (docs/kube-tests.md): etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler at the versions pinned in
# kubetest/go.mod, and KWOK (kubetest/kwok/go.mod), into a cache directory keyed by those
# versions, once per machine. No prebuilt Kubernetes binaries can be downloaded here; the Go
# module proxy and a Go toolchain are all this needs.
#
#   kubetest/build.sh              build if missing, then print the binary directory
#   kubetest/build.sh --print-dir  only print the directory (whether or not it is built)
#
# Environment: KUBE_BIN_DIR overrides the directory; KUBE_BUILD_JOBS (default 2) bounds the
# compile parallelism, since the machine's cores are shared with the test suite.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# Kept equal to the versions in go.mod (checked below): they name the cache directory.
KUBE_VERSION=v1.35.4
ETCD_VERSION=v3.6.5
KWOK_VERSION=v0.8.0
# name=module directory:package, built in this order (etcd is the quickest).
TARGETS=(
    etcd=.:./cmd/etcd
    kube-apiserver=.:k8s.io/kubernetes/cmd/kube-apiserver
    kube-controller-manager=.:k8s.io/kubernetes/cmd/kube-controller-manager
    kube-scheduler=.:k8s.io/kubernetes/cmd/kube-scheduler
    kwok=kwok:sigs.k8s.io/kwok/cmd/kwok
)
BINARIES=("${TARGETS[@]%%=*}")

versions=kube-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION
dir=${KUBE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-control-plane/$versions}
if [ "${1:-}" = "--print-dir" ]; then echo "$dir"; exit 0; fi

built() {
    for binary in "${BINARIES[@]}"; do [ -x "$dir/$binary" ] || return 1; done
    [ -s "$dir/kwok-stages.yaml" ]
}
if built; then echo "$dir"; exit 0; fi

command -v go >/dev/null || { echo "kubetest: no Go toolchain: cannot build Kubernetes" >&2; exit 1; }
mkdir -p "$dir"
# Two builders at once (make test beside make kube-binaries) would each spend minutes: the
# second waits for the first and then finds the binaries built.
exec 9>"$dir/.lock"
flock 9
if built; then echo "$dir"; exit 0; fi

cd "$here"
for pin in ".:k8s.io/kubernetes:$KUBE_VERSION" ".:go.etcd.io/etcd/server/v3:$ETCD_VERSION" \
    "kwok:sigs.k8s.io/kwok:$KWOK_VERSION"; do
    IFS=: read -r module path version <<<"$pin"
    actual=$(cd "$module" && go list -m -f '{{.Version}}' "$path")
    [ "$actual" = "$version" ] \
        || { echo "kubetest: $module/go.mod has $path $actual, build.sh pins $version" >&2; exit 1; }
done

# The version a release build stamps (hack/lib/version.sh): /version and the client's skew
# checks read it; the default is v0.0.0-master.
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

start=$(date +%s)
echo "kubetest: building Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION and KWOK $KWOK_VERSION" \
    "into $dir (once per machine; about 15 minutes on 2 cores)" >&2
# Static binaries like the official release: no cgo, module graph read only from go.sum.
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath"
jobs=${KUBE_BUILD_JOBS:-2}
for target in "${TARGETS[@]}"; do
    name=${target%%=*}
    IFS=: read -r module package <<<"${target#*=}"
    [ -x "$dir/$name" ] && continue  # an interrupted build resumes where it stopped
    flags=$ldflags
    [ "$module" = . ] || flags="-s -w"  # KWOK's version is a constant of its source
    (cd "$module" && nice go build -p "$jobs" -ldflags "$flags" -o "$dir/$name.tmp" "$package")
    mv "$dir/$name.tmp" "$dir/$name"
    echo "kubetest: built $name after $(($(date +%s) - start)) s" >&2
done
# KWOK's own stages, from its pinned module: nodes keep a heartbeat, Pods bound
# to its nodes become Running and Ready, deleted ones go.
kwok_src=$(cd kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
for stage in node/fast/node-initialize node/heartbeat/node-heartbeat \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cat "$kwok_src/$stage.yaml"
    echo "---"
done >"$dir/kwok-stages.yaml.tmp"
mv "$dir/kwok-stages.yaml.tmp" "$dir/kwok-stages.yaml"
echo "$dir"
