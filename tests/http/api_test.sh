#!/bin/sh
# A test of code that sends mail, the way a CI job in any language would write it: send through
# labmail's MX with curl (SMTP), then ask the mta's HTTP API to wait for the message and read it.
#
#   API_URL=http://127.0.0.1:3080 SMTP_URL=smtp://127.0.0.1:3525 tests/http/api_test.sh
#
# Optional: API_TOKEN (sent as a bearer token). Needs only sh, curl and grep.
set -eu

: "${API_URL:?set API_URL, e.g. http://127.0.0.1:3080}"
: "${SMTP_URL:?set SMTP_URL, e.g. smtp://127.0.0.1:3525}"
to=bob@bob.lab
subject="Confirm your sign-up $$"
auth=${API_TOKEN:+"Authorization: Bearer $API_TOKEN"}

api() {  # api METHOD PATH [curl options...]: the JSON body; fails on any 4xx/5xx
    method=$1 path=$2
    shift 2
    curl --silent --show-error --fail-with-body --max-time 30 -X "$method" \
        ${auth:+-H "$auth"} "$@" "$API_URL$path"
}

fail() { echo "FAIL: $*" >&2; exit 1; }

api GET /healthz | grep -q '"status": "ok"' || fail "healthz"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The wait starts before the mail is sent: it answers as soon as the message is stored.
api GET "/api/v1/messages/wait?to=$to&subject=sign-up&timeout=20" >"$work/wait.json" &
waiter=$!

message=$work/message.eml
printf 'From: app@alice.lab\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@ci.test>\r\n\r\nOpen http://app.test/confirm?token=abc123 to confirm.\r\n' \
    "$to" "$subject" "$$" >"$message"
curl --silent --show-error --max-time 30 "$SMTP_URL" \
    --mail-from app@alice.lab --mail-rcpt "$to" --upload-file "$message" \
    || fail "SMTP send"

wait "$waiter" || fail "the wait did not answer 200"
grep -q "\"subject\": \"$subject\"" "$work/wait.json" || fail "wait returned another message"
id=$(grep -o '"id": [0-9]*' "$work/wait.json" | head -n 1 | grep -o '[0-9]*$')

# The message as stored, and the link in it.
api GET "/api/v1/mailboxes/$to/messages/$id" | grep -q 'confirm?token=abc123' \
    || fail "the link is not in the message"
api GET "/api/v1/mailboxes/$to/messages/$id/raw" | grep -q "^Subject: $subject" \
    || fail "raw message"
api GET "/api/v1/mailboxes/$to/messages?subject=sign-up&limit=5" | grep -q "\"id\": $id" \
    || fail "listing"

# A wait for mail that never comes: 408 with a JSON body.
status=$(curl --silent --output /dev/null --write-out '%{http_code}' ${auth:+-H "$auth"} \
    "$API_URL/api/v1/messages/wait?subject=never-sent&timeout=0")
[ "$status" = 408 ] || fail "expected 408, got $status"

api DELETE "/api/v1/mailboxes/$to/messages/$id" | grep -q '"deleted": 1' || fail "delete"
echo "ok: sent, waited for, read and deleted message $id"
