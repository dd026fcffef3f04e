#!/bin/sh
# The kugetsu container's start: the secrets the bootstrap generated, the demo
# repository's webhook (`kugetsu hooks install`, which sets it right if it
# exists), then `kugetsu serve` in this process's place.
set -eu

SECRETS=${SECRETS:-/secrets/kugetsu.env}
KUGETSU=${KUGETSU:-kugetsu}

tries=0
until [ -s "$SECRETS" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ]; then
        echo "start: no $SECRETS; did the bootstrap service run?" >&2
        exit 1
    fi
    sleep 1
done
set -a
# shellcheck disable=SC1090 # written by deploy/bootstrap/gitea.sh
. "$SECRETS"
set +a

# Replicas on PostgreSQL (docker-compose.replicas.yml): the URL, from the
# bootstrap's password, for `database_url_env` in kugetsu-replicas.toml.
if [ -n "${KUGETSU_DATABASE_HOST:-}" ]; then
    if [ -z "${KUGETSU_DATABASE_PASSWORD:-}" ]; then
        echo "start: no database password in $SECRETS; it was made before replicas were set up (remove the kugetsu-secrets volume to bootstrap again)" >&2
        exit 1
    fi
    export KUGETSU_DATABASE_URL="postgres://kugetsu:${KUGETSU_DATABASE_PASSWORD}@${KUGETSU_DATABASE_HOST}:${KUGETSU_DATABASE_PORT:-5432}/${KUGETSU_DATABASE_NAME:-kugetsu}"
fi

if [ -n "${KUGETSU_DEMO_REPO:-}" ]; then
    tries=0
    until "$KUGETSU" hooks install "$KUGETSU_DEMO_REPO"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 10 ]; then
            echo "start: could not install the webhook on $KUGETSU_DEMO_REPO; serving anyway" >&2
            break
        fi
        sleep 3
    done
fi
exec "$KUGETSU" serve
