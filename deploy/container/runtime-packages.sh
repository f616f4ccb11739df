#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given
# binaries load, one a line: what a runtime image must install. Fails if a
# library belongs to no package. On Debian 12 /lib is /usr/lib, and dpkg
# knows each library under one of the two, so both are asked.
set -euo pipefail
libs=$(ldd "$@" | awk '/=> \// {print $3}' | sort -u)
for lib in $libs; do
  owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null ||
          dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true)
  if [ -z "$owner" ]; then
    echo "runtime-packages: no Debian package holds $lib" >&2
    exit 1
  fi
  echo "${owner%%:*}"
done | sort -u
