#!/usr/bin/env bash
# What `make demo` and `make test` need from the machine, before anything else runs.
#
#   scripts/prereqs.sh demo|test
#
# Run as root with apt-get at hand (a fresh Debian machine, a container, CI), it installs
# what is missing. Otherwise it prints one line per missing prerequisite, with the command
# that installs it, and exits 1; with everything there it prints nothing.
set -uo pipefail

target="${1:-test}"
case "$target" in
  demo | test) ;;
  *) echo "usage: scripts/prereqs.sh demo|test" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
shared="${ANIGENRE_SHARED_DIR:-../shared}"

packages=() # apt packages that supply what is missing
lines=()    # one per missing prerequisite: what, why, and the package's name

need() { # need PACKAGE WHAT-AND-WHY; no PACKAGE: nothing of apt's installs it
  [ -z "$1" ] || packages+=("$1")
  lines+=("$2|$1")
}

check() {
  packages=()
  lines=()
  command -v make >/dev/null 2>&1 || need make "make (runs the two commands)"
  if ! command -v "$python" >/dev/null 2>&1; then
    need python3-venv "$python (Python >= 3.11 makes .venv)"
  elif ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    need "" "Python >= 3.11 ($python is older); set PYTHON=python3.11 or newer"
  elif ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    need python3-venv "$python's venv module (makes .venv)"
  fi
  if [ "$target" = test ]; then
    command -v redis-server >/dev/null 2>&1 ||
      need redis-server "redis-server (the tests start their own, on a free port)"
    # The page's browser test drives Debian's Chromium; Playwright cannot fetch its own.
    command -v chromium >/dev/null 2>&1 || need chromium "chromium (the page's browser test)"
  fi
}

check
if [ ${#packages[@]} -gt 0 ] && [ "${EUID:-$(id -u)}" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${packages[*]} (apt-get, as root)" >&2
  # Installed, or not: the check below says what is still missing either way.
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; } >/dev/null
  check
fi

# The read-only fixtures: nothing installs them, so they are checked after any install.
if [ ! -d "$shared/data" ]; then
  echo "missing: the fixtures $shared/data (read-only posters and AniList pages);" \
    "put them there or set ANIGENRE_SHARED_DIR to the folder that holds data/" >&2
  missing_fixtures=1
fi

sudo=""
[ "${EUID:-$(id -u)}" -eq 0 ] || sudo="sudo "
for line in "${lines[@]}"; do
  package="${line##*|}"
  echo "missing: ${line%|*}${package:+; install it: ${sudo}apt-get install -y $package}" >&2
done
[ ${#lines[@]} -eq 0 ] && [ -z "${missing_fixtures:-}" ]
