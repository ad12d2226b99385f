#!/usr/bin/env bash
# Creates test/reference/.venv with the pinned reference tooling (test/reference/requirements.txt).
# Only needed to regenerate parity fixtures; tests read the committed fixtures and need no Python.
# Usage: pnpm setup:reference   (or: bash test/reference/setup.sh)
#   PYTHON=python3.11      interpreter to build the venv with (default: python3; needs >= 3.10)
#   PIP_EXTRA_INDEX_URL=…  e.g. https://download.pytorch.org/whl/cpu for a CPU-only torch (pip reads it itself)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found; install Python >= 3.10 or set PYTHON=/path/to/python3" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "error: $("$python" --version 2>&1) is too old; the reference tooling needs Python >= 3.10 (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  if ! "$python" -m venv "$venv"; then
    echo "error: '$python -m venv' failed; on Debian/Ubuntu install the python3-venv package" >&2
    exit 1
  fi
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import diffusers, safetensors, torch, transformers
print(f"reference venv ready: torch {torch.__version__}, diffusers {diffusers.__version__}, "
      f"transformers {transformers.__version__}, safetensors {safetensors.__version__}")
PY
