#!/bin/sh
# Write pgbouncer.ini and the one user it serves from the environment, then run PgBouncer.
#   PGBOUNCER_DB_HOST, PGBOUNCER_DB_PORT  the PostgreSQL server (default postgres:5432)
#   PGBOUNCER_USER, PGBOUNCER_PASSWORD    the role clients log in as (the application role); the
#                                         same password logs PgBouncer in to the server (SCRAM)
#   PGBOUNCER_POOL_SIZE                   server connections per database and user (default 20)
#   PGBOUNCER_MAX_CLIENTS                 client connections it accepts (default 1000)
set -eu
: "${PGBOUNCER_USER:?set PGBOUNCER_USER}" "${PGBOUNCER_PASSWORD:?set PGBOUNCER_PASSWORD}"
umask 077
printf '"%s" "%s"\n' "$PGBOUNCER_USER" "$PGBOUNCER_PASSWORD" > /etc/pgbouncer/userlist.txt
cat > /etc/pgbouncer/pgbouncer.ini <<INI
[databases]
* = host=${PGBOUNCER_DB_HOST:-postgres} port=${PGBOUNCER_DB_PORT:-5432}

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir =
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
; A server connection serves one transaction at a time, then goes back to the pool: trainyard
; takes no session-level lock or prepared statement (TRAINYARD_DATABASE_POOLER=transaction).
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = ${PGBOUNCER_MAX_CLIENTS:-1000}
server_reset_query =
ignore_startup_parameters = extra_float_digits
INI
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
