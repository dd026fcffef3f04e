#!/bin/sh
# Creates the demo repository <owner>/<name> with a first commit and makes
# <bot> its administrator (kugetsu installs the repository's webhook itself).
# Needs GITEA_URL and GITEA_TOKEN (a token of <owner>). Safe to run again.
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 <owner> <name> <bot>" >&2
    exit 2
fi
owner=$1 name=$2 bot=$3
api="${GITEA_URL:?GITEA_URL is not set}/api/v1"
: "${GITEA_TOKEN:?GITEA_TOKEN is not set}"

# Prints the HTTP status of one API call; the body goes to stderr on a failure.
call() {
    method=$1 path=$2 body=$3
    out=$(mktemp)
    status=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" \
        -H "Authorization: token $GITEA_TOKEN" -H 'Content-Type: application/json' \
        --data "$body" "$api$path")
    case $status in
        2*) ;;
        *) cat "$out" >&2 ;;
    esac
    rm -f "$out"
    echo "$status"
}

status=$(call POST /user/repos "{\"name\":\"$name\",\"auto_init\":true,\"default_branch\":\"main\"}")
case $status in
    201) echo "demo: created $owner/$name" ;;
    409) echo "demo: $owner/$name exists already" ;;
    *) echo "demo: could not create $owner/$name (HTTP $status)" >&2; exit 1 ;;
esac
status=$(call PUT "/repos/$owner/$name/collaborators/$bot" '{"permission":"admin"}')
case $status in
    204) echo "demo: $bot administers $owner/$name" ;;
    *) echo "demo: could not add $bot to $owner/$name (HTTP $status)" >&2; exit 1 ;;
esac
