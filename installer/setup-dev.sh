#!/usr/bin/env bash
# Installs what hostnet needs, idempotent and quiet when everything is already there.
#
#   installer/setup-dev.sh run   what running hostnet needs (`make run`): the Debian packages of
#                                the default VM and the desktop app (run-packages.txt), the
#                                venv with hostnet, and the chosen backend's packages
#                                (qemu-packages.txt when the VmBackend setting is qemu) and
#                                the Docker Engine's (engine-packages.txt when
#                                ContainerEngineEnabled is on)
#   installer/setup-dev.sh dev   all of that for every backend, plus the tools the tests and
#                                benchmarks drive (dev-packages.txt), the test extras, and the
#                                npm packages (`make setup`, `make test`, ...); the default
#
# With --list-packages it prints the Debian packages the mode needs, one a line, and installs
# nothing (the run mode still reads VmBackend, so it needs the venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

mode=dev
list_only=0
for arg in "$@"; do
  case "$arg" in
    run | dev) mode=$arg ;;
    --list-packages) list_only=1 ;;
    *)
      echo "setup: unknown argument '$arg'; use: installer/setup-dev.sh [run|dev] [--list-packages]" >&2
      exit 2
      ;;
  esac
done

packages_in() { grep -h -v -E '^\s*(#|$)' "$@" | sed -e 's/\s*#.*//' -e 's/\s*$//'; }

install_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pip's notes about this machine's extra index folders are noise here; real errors still show.
quiet() { grep -v -E "is ignored: it is neither|BuildBackendWarning|setuptools|^\s*(!!|\*+|)\s*$" || true; }

make_venv() {
  local extras=$1 stamp=$2
  local python=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$python" -m venv .venv
  fi
  # A stamp newer than pyproject.toml: hostnet (with these extras or more) is installed.
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
    return 0
  fi
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
  .venv/bin/python -m pip install -q -e ".$extras" 2>&1 | quiet
  touch "$stamp"
}

# A setting as hostnet itself reads it (user and admin settings).
setting() { .venv/bin/hostnet settings get "$1"; }

# What the chosen backend and the optional Docker Engine add to the run-time packages.
chosen_packages() {
  case "$(setting VmBackend)" in
    qemu) packages_in installer/qemu-packages.txt ;;
    *) ;; # netns (the default) needs only the run-time packages; attach needs nothing here
  esac
  if [ "$(setting ContainerEngineEnabled)" = true ]; then
    packages_in installer/engine-packages.txt
  fi
}

if [ "$mode" = run ]; then
  mapfile -t base < <(packages_in installer/run-packages.txt)
  if [ "$list_only" -eq 1 ]; then
    printf '%s\n' "${base[@]}"
    chosen_packages
    exit 0
  fi
  install_packages "${base[@]}"
  make_venv "" .venv/.pip-run-stamp
  mapfile -t extra < <(chosen_packages)
  if [ ${#extra[@]} -gt 0 ]; then
    install_packages "${extra[@]}"
  fi
  exit 0
fi

mapfile -t all < <(packages_in installer/*-packages.txt | sort -u)
if [ "$list_only" -eq 1 ]; then
  printf '%s\n' "${all[@]}"
  exit 0
fi
install_packages "${all[@]}"
make_venv "[test]" .venv/.pip-test-stamp
touch .venv/.pip-run-stamp # the test extras include everything running needs
if [ -f tests/package.json ]; then
  (cd tests && npm install --silent --no-audit --no-fund >/dev/null)
fi
