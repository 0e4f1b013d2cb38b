#!/usr/bin/env bash
# Install clipforge into a virtual environment, by profile. The Makefile, the Dockerfile and CI all run
# this one script, so the install a container gets is the install the test suite exercises.
#
#   scripts/install.sh [--dry-run] [--no-editable] PROFILE [VENV]
#
# Profiles (pip extras in pyproject.toml; system packages through apt only when run as root):
#   serve  what `make serve` needs: the server, the preview engine, and the packages the README's
#          snippets import (requests, openai; the clipforge SDK comes with the package). No torch,
#          no browser, no test tools. apt: espeak-ng (spoken dialogue in preview clips).
#   image  a container: api replicas and CPU workers in a fleet (PostgreSQL, S3). No torch.
#   gpu    the ltx2 engine on a GPU: torch (pip's default build: CUDA on Linux), diffusers and friends,
#          plus PostgreSQL and S3 and the serve profile. TORCH_INDEX_URL picks another wheel index
#          (e.g. https://download.pytorch.org/whl/cu128).
#   test   everything the test suite needs: torch==2.13.0 first (this project's CPU build; a bare torch
#          requirement would pull a multi-GB CUDA build), every extra, and apt: chromium, espeak-ng.
#
# VENV defaults to .venv in the checkout. A profile whose extras are already installed (the stamp
# VENV/.installed lists them and is newer than pyproject.toml and this script) installs nothing, so
# `make serve` after `make test` is instant. --dry-run prints the steps instead of running them.
# Environment: PYTHON (default python3), TORCH_INDEX_URL, CLIPFORGE_APT=0 to never call apt-get.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"

dry_run=0
editable=1

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "Error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --no-editable) editable=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || die "a profile is required: serve, image, gpu or test (see --help)"
profile=$1
venv=${2:-$ROOT/.venv}

# profile -> pip extras, torch requirement (installed first, empty for none), apt packages
case $profile in
  serve) extras="examples"; torch=""; apt="espeak-ng" ;;
  image) extras="postgres s3"; torch=""; apt="espeak-ng" ;;
  gpu) extras="models postgres s3 examples"; torch="$TORCH_PIN"; apt="espeak-ng" ;;
  test) extras="models postgres s3 dev examples"; torch="$TORCH_PIN"; apt="chromium espeak-ng" ;;
  *) die "unknown profile '$profile'; profiles: serve, image, gpu, test" ;;
esac

stamp="$venv/.installed"

run() {
  if [ "$dry_run" = 1 ]; then echo "+ $*"; else "$@"; fi
}

stamp_fresh() {
  [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ] && [ "$stamp" -nt "${BASH_SOURCE[0]}" ]
}

# Extras the stamp records, when it is fresh (a stale stamp vouches for nothing).
installed_extras() {
  if stamp_fresh; then cat "$stamp"; fi
}

already_installed() {
  local have extra
  have=$(installed_extras)
  for extra in $extras; do
    grep -qx "$extra" <<<"$have" || return 1
  done
}

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "${CLIPFORGE_APT:-1}" = 0 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: not installing ${missing[*]} (needs root and apt-get); features that need them say so" >&2
    return 0
  fi
  run apt-get install -y --no-install-recommends "${missing[@]}" \
    || { run apt-get update && run apt-get install -y --no-install-recommends "${missing[@]}"; } \
    || echo "note: apt-get could not install ${missing[*]}" >&2
}

# A bare CUDA base image has no Python: install one (root and apt only).
ensure_python() {
  if command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c "import ensurepip, venv" 2>/dev/null; then
    return 0
  fi
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || die "$PYTHON with venv support is required"
  run apt-get update
  run apt-get install -y --no-install-recommends python3 python3-venv
  PYTHON=python3
}

# The pip argument(s) for the project with the profile's extras, in the array `spec`.
pip_spec() {
  local target="$ROOT[$(tr ' ' ',' <<<"$extras")]"
  if [ "$editable" = 1 ]; then spec=(-e "$target"); else spec=("$target"); fi
}

main() {
  if already_installed; then
    echo "clipforge: '$profile' is already installed in $venv"
    return 0
  fi
  # shellcheck disable=SC2086 # a list of package names
  apt_install $apt
  [ -x "$venv/bin/python" ] || { ensure_python; run "$PYTHON" -m venv "$venv"; }
  local pip=("$venv/bin/python" -m pip install --quiet)
  run "${pip[@]}" --upgrade pip
  if [ -n "$torch" ]; then
    run "${pip[@]}" "$torch" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  fi
  pip_spec
  run "${pip[@]}" "${spec[@]}"
  if [ "$dry_run" = 0 ]; then
    { installed_extras; tr ' ' '\n' <<<"$extras"; } | sort -u >"$stamp.tmp"
    mv "$stamp.tmp" "$stamp"
  fi
  [ "$dry_run" = 1 ] && { echo "(dry run: nothing installed)"; return 0; }
  echo "clipforge: '$profile' installed in $venv; run $venv/bin/clipforge, or 'source $venv/bin/activate' first"
}

main
