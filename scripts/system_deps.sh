#!/usr/bin/env bash
# Install the Debian packages named as arguments when their commands are missing.
# Used by `make test` so a fresh machine runs the browser, Prometheus and video tests too.
set -euo pipefail

declare -A COMMAND_OF=([chromium]=chromium [prometheus]=prometheus [ffmpeg]=ffmpeg [tmux]=tmux)
missing=()
for pkg in "$@"; do
  if [ "$pkg" = postgresql ]; then
    # Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin.
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=("$pkg")
    continue
  fi
  cmd=${COMMAND_OF[$pkg]:-$pkg}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "system_deps: missing ${missing[*]} and no apt-get here; the tests that need them will skip" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "system_deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
