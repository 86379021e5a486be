#!/usr/bin/env bash
# Create (or reuse) a separate virtualenv with torch_xla for CPU (PJRT_DEVICE=CPU).
#
#   bash scripts/xla-env.sh [PROJECT_DIR]
#
# torch_xla 2.9.0 pins torch 2.9.0, which cannot live in the main environment,
# so it gets its own venv at ${TX_XLA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tx/xla-venv}.
# If PROJECT_DIR is given and holds a pyproject.toml, it is installed into the venv
# with `pip install --no-deps -e PROJECT_DIR`.
#
# All progress goes to stderr; the last (only) line on stdout is the venv's python,
# so `PY=$(bash scripts/xla-env.sh .)` works. A stamp file marks a complete install;
# a second call with the same pins returns in about a second.
#
# Env knobs:
#   TX_XLA_VENV     venv location (default above)
#   TX_XLA_PYTHON   interpreter used to create the venv (default: python3.11, else python3)
#   TX_XLA_REBUILD  =1 to delete and rebuild the venv
#
# Note: no CPU-only torch 2.9.0 wheel is reachable through the configured pip
# indexes (PyPI + the local /opt indexes only carry +cpu for other versions), so
# PyPI's torch 2.9.0 comes with its nvidia-* CUDA packages (~7 GB). That is
# harmless on CPU, just big.
set -euo pipefail

TORCH_VERSION=2.9.0
TORCH_XLA_VERSION=2.9.0
# Let pip pick versions compatible with torch 2.9.0.
HF_STACK=(transformers datasets evaluate accelerate pyyaml pluggy typer rouge_score
          sentencepiece tokenizers)
EXTRA_TOOLS=(setuptools wheel)

VENV="${TX_XLA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tx/xla-venv}"
PROJECT_DIR="${1:-}"

log() { printf '[xla-env] %s\n' "$*" >&2; }
# pip, with its output on stderr minus the noise the local file:// extra indexes make
# ("Location 'file:///opt/...' is ignored") for every package they do not carry.
pip_() {
    "$PY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
}
die() { printf '[xla-env] error: %s\n' "$*" >&2; exit 1; }

# What the stamp certifies: changing any pin invalidates it.
SPEC="torch==${TORCH_VERSION} torch_xla==${TORCH_XLA_VERSION} ${HF_STACK[*]} ${EXTRA_TOOLS[*]} v1"
STAMP="$VENV/.tx-xla-complete"
PY="$VENV/bin/python"

mkdir -p "$(dirname "$VENV")"

# Serialise concurrent callers (two agents asking for the venv at once).
exec 9>"$VENV.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

if [[ "${TX_XLA_REBUILD:-0}" == 1 && -d "$VENV" ]]; then
    log "TX_XLA_REBUILD=1: removing $VENV"
    rm -rf "$VENV"
fi

if [[ -f "$STAMP" && -x "$PY" && "$(cat "$STAMP")" == "$SPEC" ]]; then
    log "reusing complete venv $VENV"
else
    if [[ -d "$VENV" ]]; then
        log "venv $VENV is incomplete or from other pins: rebuilding"
        rm -rf "$VENV"
    fi
    BASE_PY="${TX_XLA_PYTHON:-}"
    if [[ -z "$BASE_PY" ]]; then
        for cand in python3.11 python3; do
            if command -v "$cand" >/dev/null 2>&1; then BASE_PY="$cand"; break; fi
        done
    fi
    [[ -n "$BASE_PY" ]] || die "no python3 found (set TX_XLA_PYTHON)"
    # torch_xla 2.9.0 ships wheels for CPython 3.10-3.13 on Linux x86_64 only.
    "$BASE_PY" - <<'EOF' || die "need CPython 3.10-3.13 on Linux x86_64 for torch_xla 2.9.0 (set TX_XLA_PYTHON)"
import platform, sys
ok = (3, 10) <= sys.version_info[:2] <= (3, 13) and sys.platform == "linux" and platform.machine() == "x86_64"
sys.exit(0 if ok else 1)
EOF
    log "creating venv $VENV with $("$BASE_PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$BASE_PY" -m venv "$VENV"
    pip_ install --quiet --upgrade pip

    # Keep torch pinned through every later install into this venv.
    CONSTRAINTS="$VENV/tx-constraints.txt"
    printf 'torch==%s\ntorch_xla==%s\n' "$TORCH_VERSION" "$TORCH_XLA_VERSION" > "$CONSTRAINTS"

    log "installing torch==$TORCH_VERSION torch_xla==$TORCH_XLA_VERSION + HF stack (several GB, a few minutes)"
    pip_ install --progress-bar off -c "$CONSTRAINTS" \
        "torch==${TORCH_VERSION}" "torch_xla==${TORCH_XLA_VERSION}" \
        "${HF_STACK[@]}" "${EXTRA_TOOLS[@]}"

    log "checking the install"
    PJRT_DEVICE=CPU "$PY" - >&2 <<EOF
import torch, torch_xla, transformers, datasets, evaluate, accelerate
assert torch.__version__.split("+")[0] == "${TORCH_VERSION}", torch.__version__
assert torch_xla.__version__.split("+")[0] == "${TORCH_XLA_VERSION}", torch_xla.__version__
print("torch", torch.__version__, "torch_xla", torch_xla.__version__,
      "transformers", transformers.__version__, "datasets", datasets.__version__,
      "accelerate", accelerate.__version__)
EOF
    printf '%s' "$SPEC" > "$STAMP"
    rm -f "$VENV/.tx-project-stamp"
    log "venv complete"
fi

if [[ -n "$PROJECT_DIR" ]]; then
    if [[ -f "$PROJECT_DIR/pyproject.toml" ]]; then
        PROJECT_DIR="$(cd "$PROJECT_DIR" && pwd)"
        PSTAMP="$VENV/.tx-project-stamp"
        PSPEC="$PROJECT_DIR $(cksum < "$PROJECT_DIR/pyproject.toml")"
        if [[ -f "$PSTAMP" && "$(cat "$PSTAMP")" == "$PSPEC" ]]; then
            log "project $PROJECT_DIR already installed (editable)"
        else
            log "installing project $PROJECT_DIR (--no-deps -e)"
            # Prefer the venv's own setuptools (fast, no index access); fall back to an
            # isolated build if the project's build backend is not installed here.
            if ! pip_ install --quiet --no-deps --no-build-isolation -e "$PROJECT_DIR"; then
                log "no-build-isolation install failed; retrying with build isolation"
                pip_ install --quiet --no-deps -e "$PROJECT_DIR"
            fi
            printf '%s' "$PSPEC" > "$PSTAMP"
        fi
    else
        log "no pyproject.toml in '$PROJECT_DIR': skipping project install"
    fi
fi

echo "$PY"
