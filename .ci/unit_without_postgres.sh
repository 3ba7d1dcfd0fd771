#!/usr/bin/env bash
# The unit suite with PostgreSQL hidden: proves `python -m pytest tests/unit` needs no server,
# no server binary and no libpq outside the drivers' wheels (docs/testing.md).
#
# As root with unshare(1) permitted, the script re-runs itself in a private mount namespace
# (unshare -m) and mounts over every PostgreSQL binary and library it can find: tmpfs over
# /usr/lib/postgresql, /usr/share/postgresql*, $PG_BIN; /dev/null over pg_ctl, postgres,
# initdb and psql wherever PATH has them and over the system's libpq.so*. The mounts vanish
# with the namespace; nothing on the host changes. It checks that none of the tools is
# found any more, then runs the suite. Elsewhere it says so and runs the suite as it is.
#
# Usage: .ci/unit_without_postgres.sh [pytest args...]   (AURORA_TEST_DRIVER is honoured)
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=(pg_ctl postgres initdb psql)

if [ "${AURORA_UNIT_NO_PG_INSIDE:-}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare -m true 2>/dev/null; then
    AURORA_UNIT_NO_PG_INSIDE=1 exec unshare -m --propagation private "$0" "$@"
  fi
  echo "ci: unshare -m not permitted here (needs root); running tests/unit with PostgreSQL still installed"
  exec python -m pytest tests/unit "$@"
fi

hide_dir() { [ -d "$1" ] && mount -t tmpfs -o ro,size=1k aurora-no-pg "$1" && echo "ci: hidden $1/"; return 0; }
hide_file() { [ -e "$1" ] && mount --bind /dev/null "$1" && echo "ci: hidden $1"; return 0; }

for dir in /usr/lib/postgresql /usr/share/postgresql /usr/share/postgresql-common ${PG_BIN:+"$PG_BIN"}; do
  hide_dir "$dir"
done
IFS=: read -r -a path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  for tool in "${TOOLS[@]}"; do
    [ -e "$dir/$tool" ] && [ ! -c "$dir/$tool" ] && hide_file "$dir/$tool"
  done
done
for lib in $(ldconfig -p | awk '/libpq\.so/ {print $NF}' | sort -u); do
  real=$(readlink -f "$lib")
  [ -c "$real" ] || hide_file "$real"
done

# The check: nothing of PostgreSQL is left to find.
still=()
for tool in "${TOOLS[@]}"; do
  found=$(command -v "$tool" || true)
  echo "ci: command -v $tool -> ${found:-(not found)}"
  [ -z "$found" ] || still+=("$found")
done
if python -c "from aurora_backend.testing import find_pg_bin; print(find_pg_bin())" 2>/dev/null; then
  still+=("find_pg_bin()")
fi
if [ ${#still[@]} -gt 0 ]; then
  echo "ci: PostgreSQL still visible: ${still[*]}" >&2
  exit 2
fi
unset PG_BIN AURORA_TEST_DSN
export AURORA_UNIT_NO_POSTGRES=1  # tests/unit/test_unit_rule.py checks the hiding from inside
exec python -m pytest tests/unit "$@"
