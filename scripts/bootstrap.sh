#!/usr/bin/env bash
# Sets up everything robustbench-lift needs in ./.venv, then runs one job:
#   bash scripts/bootstrap.sh benchmark   # the built-in benchmark (robustbench-lift run)
#   bash scripts/bootstrap.sh test        # the test suite
#   bash scripts/bootstrap.sh setup       # set-up only
# Re-running is cheap: installs are skipped while setup.cfg is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-setup}"
shift || true
case "$job" in setup|benchmark|test) ;; *) echo "usage: bash scripts/bootstrap.sh [setup|benchmark|test]" >&2; exit 2;; esac

python="${PYTHON:-python3}"
# torch is installed on its own so a machine can pick its build (CPU wheel index, CUDA).
torch_spec="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
torchattacks_spec="torchattacks==3.5.1"
venv=.venv
stamp="$venv/.installed-$( (cat setup.cfg; echo "$torch_spec $torchattacks_spec") | sha256sum | cut -c1-16)"

log() { echo "[bootstrap] $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {
  # Debian packages: installed where apt-get is usable, otherwise the caller says how.
  command -v apt-get >/dev/null || return 1
  as_root true 2>/dev/null || return 1
  if ! as_root apt-get install -y -q "$@" >/dev/null 2>&1; then
    as_root apt-get update -q >/dev/null 2>&1 || true
    as_root apt-get install -y -q "$@" >/dev/null 2>&1 || return 1
  fi
}

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
  log "installing $torch_spec"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $torch_spec 2>&1 | grep -v "is ignored" >&2 || true
  "$venv/bin/python" -c "import torch, torchvision" || { log "torch failed to install"; exit 1; }
  log "installing robustbench-lift and its dependencies"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "is ignored" >&2 || true
  # AutoAttack's library: its metadata pins requests~=2.25.1 (which it never imports and
  # which would downgrade requests and urllib3), so it goes in without its declared
  # dependencies; the ones it uses (torch, torchvision, scipy, numpy, tqdm) are ours.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$torchattacks_spec" 2>&1 | grep -v "is ignored" >&2 || true
  "$venv/bin/python" -c "import robustbench_lift, corruptions, foolbox, imagecorruptions, antialiased_cnns, torchattacks" || { log "install failed"; exit 1; }
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi

if [ ! -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && [ -z "${ROBUSTBENCH_LIFT_DATA:-}" ]; then
  if apt_install dataset-fashion-mnist; then
    log "installed Debian's dataset-fashion-mnist"
  else
    log "Fashion-MNIST not installed: on Debian/Ubuntu run 'apt-get install dataset-fashion-mnist';"
    log "elsewhere run the benchmark with --download (torchvision fetches it) or --data-dir FOLDER"
  fi
fi

# Headless Chromium for the HTML report's browser test (test job only). Where apt is not
# usable the set-up goes on and that test skips, saying why.
if [ "$job" = test ] && [ ! -x /usr/bin/chromium ]; then
  if apt_install chromium chromium-driver; then
    log "installed Debian's chromium and chromium-driver (browser test of the HTML report)"
  else
    log "chromium not installed: the report's browser test will be skipped; on Debian/Ubuntu run 'apt-get install chromium chromium-driver'"
  fi
fi

case "$job" in
  setup) log "ready: $venv/bin/robustbench-lift" ;;
  benchmark) exec "$venv/bin/robustbench-lift" run "$@" ;;
  test) exec "$venv/bin/python" -m pytest -q "$@" ;;
esac
