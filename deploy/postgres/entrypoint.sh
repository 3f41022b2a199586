#!/bin/sh
# The PostgreSQL image's entrypoint (deploy/postgres/build.sh): on the first
# start, make a cluster in $PGDATA (the data volume) with a role and a
# database for the coordinator's store, whose password is read from
# $POSTGRES_PASSWORD_FILE; then run the server in the foreground, listening
# on every address of the container with scram-sha-256 password
# authentication (no trust, no passwordless access from the network).
#
# Environment: POSTGRES_USER (cloister), POSTGRES_DB (cloister),
# POSTGRES_PASSWORD_FILE (required on the first start), PGDATA.
set -eu
user=${POSTGRES_USER:-cloister}
db=${POSTGRES_DB:-cloister}
: "${PGDATA:?PGDATA is not set}"

case $user$db in
*[!A-Za-z0-9_]*)
	echo "cloister-postgres: POSTGRES_USER and POSTGRES_DB may hold only letters, digits and _" >&2
	exit 1
	;;
esac

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	file=${POSTGRES_PASSWORD_FILE:?the first start needs POSTGRES_PASSWORD_FILE: the store role password}
	[ -r "$file" ] || {
		echo "cloister-postgres: cannot read POSTGRES_PASSWORD_FILE $file" >&2
		exit 1
	}
	pw=$(head -n 1 "$file")
	[ ${#pw} -ge 16 ] || {
		echo "cloister-postgres: the password in $file is shorter than 16 characters" >&2
		exit 1
	}
	echo "cloister-postgres: first start: initdb in $PGDATA, role $user, database $db"
	# The superuser is postgres over the Unix socket only (peer); the
	# store's role logs in with its password.
	initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
		--encoding=UTF8 --locale=C.UTF-8 >/dev/null
	{
		echo "local all postgres peer"
		echo "host $db $user 0.0.0.0/0 scram-sha-256"
		echo "host $db $user ::/0 scram-sha-256"
	} >"$PGDATA/pg_hba.conf"
	pg_ctl --pgdata="$PGDATA" -o "-c listen_addresses='' -c jit=off" -l /tmp/first-start.log -w start >/dev/null || {
		cat /tmp/first-start.log >&2
		echo "cloister-postgres: the server did not start for the first setup (is $PGDATA writable, and /run/postgresql by the postgres user?)" >&2
		exit 1
	}
	# The password goes through a psql variable, quoted by psql (:'pw'),
	# never through the command line.
	psql -v ON_ERROR_STOP=1 -q --username=postgres --dbname=postgres -v pw="$pw" <<SQL
CREATE ROLE $user LOGIN PASSWORD :'pw';
CREATE DATABASE $db OWNER $user;
SQL
	pg_ctl --pgdata="$PGDATA" -m fast -w stop >/dev/null
fi
# jit=off: the image has no LLVM (build.sh).
exec postgres -D "$PGDATA" -c listen_addresses='*' -c password_encryption=scram-sha-256 -c jit=off
