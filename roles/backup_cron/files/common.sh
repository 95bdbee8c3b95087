# Shared by clinic-backup and clinic-audit-export (installed by the clinic.infra.backup_cron role):
# configuration, JSON log lines, AWS calls, metrics and the run lock. Sourced, never run.
# shellcheck shell=bash

CONFIG=${CLINIC_BACKUP_CONFIG:-/etc/clinic/backup/backup.env}
# shellcheck source=/dev/null
. "$CONFIG"

export AWS_DEFAULT_REGION=$AWS_REGION AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=3
if [ -n "$AWS_CREDENTIALS_FILE" ]; then
  export AWS_SHARED_CREDENTIALS_FILE=$AWS_CREDENTIALS_FILE
fi
PY=$TOOLS_VENV/bin/python
AWS=$TOOLS_VENV/bin/aws
STATUS=running
STEP=start
STARTED_EPOCH=$(date +%s)

json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# log LEVEL EVENT MESSAGE [NAME JSON_VALUE]...: one JSON line on stdout.
log() {
  local level=$1 event=$2 message=$3 line
  shift 3
  line="{\"time\":$(json_string "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),\"level\":$(json_string "$level")"
  line+=",\"job\":$(json_string "$JOB"),\"environment\":$(json_string "$BACKUP_ENV")"
  line+=",\"event\":$(json_string "$event"),\"message\":$(json_string "$message")"
  while [ $# -ge 2 ]; do
    line+=",$(json_string "$1"):$2"
    shift 2
  done
  printf '%s}\n' "$line"
}

fail() {
  log error "$STEP" "$1"
  exit 1
}

# S3 calls may hit their own endpoint; every other service uses the general one.
aws_s3() {
  timeout --kill-after=30 "$TIMEOUT_SECONDS" "$AWS" ${S3_ENDPOINT_URL:+--endpoint-url "$S3_ENDPOINT_URL"} \
    --cli-connect-timeout 10 "$@"
}

aws_api() {
  timeout --kill-after=10 120 "$AWS" ${AWS_ENDPOINT_URL_ALL:+--endpoint-url "$AWS_ENDPOINT_URL_ALL"} \
    --cli-connect-timeout 10 "$@"
}

# put_metrics NAME VALUE UNIT [NAME VALUE UNIT]...: one put-metric-data call, Environment dimension.
put_metrics() {
  local data="[" sep=""
  while [ $# -ge 3 ]; do
    data+="$sep{\"MetricName\":$(json_string "$1"),\"Value\":$2,\"Unit\":$(json_string "$3")"
    data+=",\"Dimensions\":[{\"Name\":\"Environment\",\"Value\":$(json_string "$BACKUP_ENV")}]}"
    sep=","
    shift 3
  done
  aws_api cloudwatch put-metric-data --namespace "$METRIC_NAMESPACE" --metric-data "$data]"
}

# take_lock FILE: hold an exclusive lock for the rest of the run, or skip the run (exit 0) when
# another run holds it.
take_lock() {
  exec 9>>"$1"
  if ! flock -n 9; then
    STATUS=skipped
    log warning skipped "another $JOB run holds $1: this run skips" lock "$(json_string "$1")"
    exit 0
  fi
}

refuse_root() {
  if [ "$(id -u)" -eq 0 ]; then
    printf '%s must not run as root: runuser -u %s -- %s\n' "$0" "$BACKUP_USER" "$0" >&2
    exit 2
  fi
}

# The key ARN and id behind KMS_KEY_ALIAS, as the role looked them up (the hosts need no KMS
# rights beyond what S3 uses on their behalf).
KEY_ARN=$KMS_KEY_ARN
KEY_ID=${KEY_ARN##*/}

# s3_put BUCKET FILE KEY [--if-absent]: one upload with SSE-KMS under the key and the file's sha256
# as metadata, S3's reply checked (clinic_backup_tool.py put). With --if-absent the key is
# write-once: S3 refuses the put when the key exists, and the status is 3.
s3_put() {
  local bucket=$1 file=$2 key=$3
  shift 3
  timeout --kill-after=30 "$TIMEOUT_SECONDS" "$PY" "$TOOL" put "$bucket" "$file" "$key" \
    --key-id "$KEY_ARN" --key-id "$KEY_ID" --region "$AWS_REGION" --endpoint "$S3_ENDPOINT_URL" "$@"
}

# put_verified BUCKET FILE KEY [s3_put options]: s3_put, then check with head-object that S3 holds
# the object encrypted with the key, with the right size and digest (the backup prefix is
# readable by the hosts). PUT_VERSION_ID is the new version's id.
put_verified() {
  local bucket=$1 file=$2 key=$3 sha bytes out head errors
  sha=$(sha256sum "$file" | cut -d' ' -f1)
  bytes=$(stat -c %s "$file")
  errors=$(mktemp)
  if ! out=$(s3_put "$@" 2>"$errors"); then
    out=$(cat "$errors")
    rm -f "$errors"
    fail "upload of s3://$bucket/$key failed: $out"
  fi
  rm -f "$errors"
  PUT_VERSION_ID=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["version_id"])' "$out")
  head=$(mktemp)
  out=$(aws_s3 s3api head-object --bucket "$bucket" --key "$key" --output json 2>&1 >"$head") \
    || fail "head-object of s3://$bucket/$key failed: $out"
  out=$("$PY" "$TOOL" check-head "$head" --bytes "$bytes" --sha256 "$sha" --key-id "$KEY_ARN" \
    --key-id "$KEY_ID" 2>&1) || fail "s3://$bucket/$key does not verify: $out"
  rm -f "$head"
}

# s3_tool SUBCOMMAND ARGS...: a sub-command of the helper that calls S3 itself.
s3_tool() {
  timeout --kill-after=30 120 "$PY" "$TOOL" "$@" --region "$AWS_REGION" --endpoint "$S3_ENDPOINT_URL"
}
