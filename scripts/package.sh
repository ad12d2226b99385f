#!/usr/bin/env bash
# Builds and packs the installable packages, installs them into an empty project with npm, and checks the result.
# CI runs it (`.ci/run`), and the Dockerfile's build stage runs the same `install` step, so CI proves the image's
# build steps even on machines without a container runtime.
#
#   bash scripts/package.sh pack OUTDIR       build (tsc) and pack @flux-ts/{core,flux,server,cli} into OUTDIR/*.tgz
#   bash scripts/package.sh install APPDIR    pack, `npm install` the tarballs into the empty project APPDIR, then
#                                             `npx flux-ts setup-native` there (the native CPU backend)
#   bash scripts/package.sh smoke APPDIR      run the installed product from APPDIR as a user would: --version,
#                                             backend, an import from plain Node, generate with relative paths
#
# Needs Node 22+ with npm, and pnpm (the repository's package manager) for building and packing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(core flux server cli)
say() { echo "package: $*"; }
die() { echo "package: error: $*" >&2; exit 1; }

pack() {
  local out="$1"
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"
  say "building (tsc -b) into packages/*/dist"
  (cd "$ROOT" && pnpm -s build)
  rm -f "$out"/flux-ts-*.tgz
  for p in "${PACKAGES[@]}"; do
    (cd "$ROOT/packages/$p" && pnpm pack --pack-destination "$out" >/dev/null)
  done
  ls "$out"/flux-ts-*.tgz >/dev/null 2>&1 || die "pnpm pack wrote no tarballs into $out"
  say "packed: $(cd "$out" && ls flux-ts-*.tgz | tr '\n' ' ')"
}

install_app() {
  local app="$1"
  mkdir -p "$app"
  app="$(cd "$app" && pwd)"
  local tarballs="$app/.tarballs"
  pack "$tarballs"
  [[ -f "$app/package.json" ]] || (cd "$app" && npm init -y >/dev/null)
  say "npm install (the tarballs and their dependencies from the npm registry) in $app"
  # tfjs-node's own install script downloads libtensorflow from Google's storage; where that host is unreachable npm
  # drops the optional dependency, and `flux-ts setup-native` installs it without that script.
  (cd "$app" && npm install --no-audit --no-fund --loglevel=error "$tarballs"/flux-ts-*.tgz)
  say "flux-ts setup-native"
  (cd "$app" && npx --no-install flux-ts setup-native)
}

smoke() {
  local app
  app="$(cd "$1" && pwd)"
  cd "$app"
  [[ ! -e node_modules/tsx && ! -e node_modules/typescript ]] || die "tsx or typescript is installed in $app: the product must run without them"
  say "\$ npx flux-ts --version"; npx --no-install flux-ts --version
  say "\$ npx flux-ts backend"; npx --no-install flux-ts backend
  say "\$ node -e \"import('@flux-ts/flux').then(m => console.log(typeof m.FluxPipeline))\""
  local t
  t="$(node -e "import('@flux-ts/flux').then(m => console.log(typeof m.FluxPipeline))")"
  echo "$t"
  [[ "$t" == function ]] || die "@flux-ts/flux does not export FluxPipeline to plain Node"
  node -e "import('@flux-ts/server').then(m => { if (typeof m.createServer !== 'function') process.exit(1); })" || die "@flux-ts/server does not import"
  rm -rf tiny-flux out
  cp -r "$ROOT/test/fixtures/pipeline/tiny-flux" tiny-flux
  say "\$ npx flux-ts generate --model tiny-flux \"a photo of a cat\" --width 128 --height 128 --seed 7 --out out/cat.png --json"
  npx --no-install flux-ts generate --model tiny-flux "a photo of a cat" --width 128 --height 128 --seed 7 --out out/cat.png --json
  [[ -s out/cat.png ]] || die "generate wrote no out/cat.png (relative to $app; the folder is created)"
  say "smoke test passed in $app"
}

case "${1:-}" in
  pack) [[ $# -eq 2 ]] || die "usage: package.sh pack OUTDIR"; pack "$2" ;;
  install) [[ $# -eq 2 ]] || die "usage: package.sh install APPDIR"; install_app "$2" ;;
  smoke) [[ $# -eq 2 ]] || die "usage: package.sh smoke APPDIR"; smoke "$2" ;;
  *) die "usage: package.sh pack OUTDIR | install APPDIR | smoke APPDIR" ;;
esac
