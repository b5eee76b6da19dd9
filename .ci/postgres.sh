# Sourced by .ci/run: a throwaway PostgreSQL server for tests/test_tune_postgres.py (two
# `seqlab tune` workers sharing one study). Debian's `postgresql` package (installed if
# missing); a fresh cluster in a temporary folder, listening on 127.0.0.1 only (no other
# interface, socket in that folder), trust auth for the local test user, one database
# `seqlab_test`; stopped and deleted when CI exits. Exports SEQLAB_TEST_POSTGRES (its URL)
# and SEQLAB_REQUIRE_POSTGRES=1 (the tests then fail instead of skipping).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_DIR=$(mktemp -d /tmp/seqlab-ci-pg.XXXXXX)
# a free port (two CI runs on one machine must not collide), unless SEQLAB_CI_PG_PORT says
PG_PORT=${SEQLAB_CI_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; PG_AS=(runuser -u postgres --); else PG_AS=(); fi
trap '"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$PG_DIR"' EXIT
"${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U seqlab >/dev/null
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR" start >/dev/null
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U seqlab seqlab_test
export SEQLAB_TEST_POSTGRES="postgresql://seqlab@127.0.0.1:$PG_PORT/seqlab_test"
export SEQLAB_REQUIRE_POSTGRES=1
