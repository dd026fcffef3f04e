#!/bin/sh
# First start of the compose deployment, run once by the `bootstrap` service in
# Gitea's own image (it needs the `gitea` command and Gitea's data volume):
# the admin and bot accounts, their tokens, the webhook secret, and the demo
# repository. Everything it makes goes to $SECRETS (a volume only the
# bootstrap and kugetsu mount). A second start finds the file and does nothing.
set -eu

SECRETS=${SECRETS:-/secrets/kugetsu.env}
GITEA_URL=${GITEA_URL:-http://gitea:3000}
ADMIN=${GITEA_ADMIN:-kugetsu-admin}
BOT=${KUGETSU_BOT:-kugetsu}
here=$(dirname "$0")

if [ -s "$SECRETS" ]; then
    echo "bootstrap: already done ($SECRETS exists)"
    exit 0
fi

# 32 random bytes, hex: the secrets are generated here, never shipped.
random_hex() {
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

echo "bootstrap: waiting for Gitea at $GITEA_URL"
tries=0
until curl -fsS "$GITEA_URL/api/healthz" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then
        echo "bootstrap: Gitea did not come up" >&2
        exit 1
    fi
    sleep 1
done

# Gitea's command refuses to run as root: as its own user, then.
gitea_cli() {
    if [ "$(id -u)" = 0 ]; then su-exec git gitea "$@"; else gitea "$@"; fi
}

has_user() {
    gitea_cli admin user list | awk 'NR > 1 { print $2 }' | grep -qx "$1"
}

if has_user "$ADMIN"; then
    echo "bootstrap: $ADMIN exists already; its password is unchanged"
else
    admin_password=$(random_hex | cut -c1-24)
    gitea_cli admin user create --admin --username "$ADMIN" --password "$admin_password" \
        --email "$ADMIN@localhost" --must-change-password=false
    # Said at once: a later step may fail, and the account stays.
    echo "bootstrap: log in to Gitea as $ADMIN with password $admin_password"
fi
if ! has_user "$BOT"; then
    gitea_cli admin user create --username "$BOT" --random-password \
        --email "$BOT@localhost" --must-change-password=false
fi
stamp=$(date +%s)
# The bot comments, reacts, pushes and installs its webhook; it reads who it is.
bot_token=$(gitea_cli admin user generate-access-token --username "$BOT" --token-name "kugetsu-$stamp" \
    --scopes "write:repository,write:issue,read:user,write:organization" --raw)
admin_token=$(gitea_cli admin user generate-access-token --username "$ADMIN" --token-name "bootstrap-$stamp" \
    --scopes "write:repository,write:user" --raw)

GITEA_URL="$GITEA_URL" GITEA_TOKEN="$admin_token" "$here/demo.sh" "$ADMIN" demo "$BOT"

status_password=$(random_hex | cut -c1-24)
echo "bootstrap: the status page (http://localhost:8081) asks for password $status_password"
umask 077
database_password=$(random_hex)
# For docker-compose.replicas.yml: PostgreSQL's image reads its password from a
# file (POSTGRES_PASSWORD_FILE) as its own user, so this one file is readable.
(umask 022 && printf '%s' "$database_password" >"$(dirname "$SECRETS")/postgres-password")
tmp="$SECRETS.tmp"
# Sourced by deploy/start.sh: every value quoted. Tokens and hex never hold a quote.
{
    printf "KUGETSU_GITEA_TOKEN='%s'\n" "$bot_token"
    printf "KUGETSU_GITEA_WEBHOOK_SECRET='%s'\n" "$(random_hex)"
    printf "KUGETSU_DEMO_REPO='%s'\n" "gitea/$ADMIN/demo"
    printf "KUGETSU_STATUS_PASSWORD='%s'\n" "$status_password"
    printf "KUGETSU_DATABASE_PASSWORD='%s'\n" "$database_password"
} >"$tmp"
# kugetsu's container runs as uid 1000 (deploy/Containerfile), and reads it alone.
if [ "$(id -u)" = 0 ]; then chown "${SECRETS_OWNER:-1000:1000}" "$tmp"; fi
mv "$tmp" "$SECRETS"
echo "bootstrap: done. Open $ADMIN/demo in Gitea and write an issue that mentions @$BOT."
