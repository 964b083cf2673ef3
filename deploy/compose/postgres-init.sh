#!/bin/sh
# First start of the compose PostgreSQL (docker-entrypoint-initdb.d): the tidemark server's role.
# Not a superuser and without BYPASSRLS, so row-level security applies to it; CREATE on the
# database (schema tidemark, replica schemas) and on schema public (for replicas of public.*).
# The password arrives as a psql variable, never spliced into SQL text.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$TIDEMARK_DB_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
create role tidemark_server login password :'password';
select format('grant create, connect on database %I to tidemark_server', current_database()) \gexec
grant usage, create on schema public to tidemark_server;
SQL
