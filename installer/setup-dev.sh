#!/usr/bin/env bash
# Installs what hostnet's development, tests and benchmarks need: Debian packages, the venv, npm packages.
# Idempotent and quiet when everything is already there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

mapfile -t pkgs < <(grep -v -E '^\s*(#|$)' installer/dev-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
# pip's notes about this machine's extra index folders are noise here; real errors still show.
quiet() { grep -v -E "is ignored: it is neither|BuildBackendWarning|setuptools|^\s*(!!|\*+|)\s*$" || true; }
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | quiet

if [ -f tests/package.json ]; then
  (cd tests && npm install --silent --no-audit --no-fund >/dev/null)
fi
