#!/usr/bin/env bash
# LocalStack ready.d hook (docker-compose.yml mounts it): creates login-queue with its dead-letter
# queue and loads the exercise's sample logins, one message per record, the record's JSON as body.
# test/deploy.test.ts runs this same file against the in-process SQS emulator.
#
# Run again against the same LocalStack it changes nothing: CreateQueue with the same attributes
# returns the existing queue, and a tag on login-queue records that the samples were sent.
set -euo pipefail

# awslocal's own defaults, made explicit: access key `test` is LocalStack's account 000000000000
# and the region is us-east-1, which is where docker-compose.yml's SQS_QUEUE_URL points.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

queue_name="${LOGIN_QUEUE_NAME:-login-queue}"
samples_file="${SAMPLES_FILE:-/opt/login-ingest/fetch-sample-logins.json}"
# A message that failed this often goes to the DLQ (the service keeps bad bodies itself, in
# rejected_messages, so only messages that keep failing for other reasons end up there).
max_receive_count=5
# Default for receives that ask for none; the service asks for SQS_VISIBILITY_TIMEOUT_SECONDS
# (60) on each receive and extends it while a batch is still being stored.
visibility_timeout=60

# Read the samples before touching the queues, so a missing or broken file changes nothing.
# One line per SendMessageBatch call: a JSON array of up to 10 entries.
batches="$(python3 - "$samples_file" <<'PY'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    records = json.load(f)
if not isinstance(records, list):
    sys.exit(f"{sys.argv[1]}: expected a JSON array of records")
for start in range(0, len(records), 10):
    chunk = records[start:start + 10]
    entries = [{"Id": str(i), "MessageBody": json.dumps(r, separators=(",", ":"), ensure_ascii=False)} for i, r in enumerate(chunk)]
    print(json.dumps(entries, ensure_ascii=False))
PY
)"
records="$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1], encoding="utf-8"))))' "$samples_file")"

dlq_url="$(awslocal sqs create-queue --queue-name "${queue_name}-dlq" --query QueueUrl --output text)"
dlq_arn="$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)"

attributes="$(python3 -c '
import json, sys
print(json.dumps({
    "VisibilityTimeout": sys.argv[1],
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": sys.argv[2], "maxReceiveCount": int(sys.argv[3])}),
}))' "$visibility_timeout" "$dlq_arn" "$max_receive_count")"
queue_url="$(awslocal sqs create-queue --queue-name "$queue_name" --attributes "$attributes" --query QueueUrl --output text)"
echo "init-queue: ${queue_name} (redrive to ${queue_name}-dlq after ${max_receive_count} receives) is ready"

if [ "$(awslocal sqs list-queue-tags --queue-url "$queue_url" --query Tags.samples --output text)" = "sent" ]; then
  echo "init-queue: the samples were sent to ${queue_name} before; not sending them again"
  exit 0
fi

while IFS= read -r entries; do
  [ -n "$entries" ] || continue
  failed="$(awslocal sqs send-message-batch --queue-url "$queue_url" --entries "$entries" --query Failed --output text)"
  if [ -n "$failed" ] && [ "$failed" != "None" ]; then
    echo "init-queue: SQS refused messages: ${failed}" >&2
    exit 1
  fi
done <<<"$batches"

awslocal sqs tag-queue --queue-url "$queue_url" --tags samples=sent
echo "init-queue: sent the ${records} records of ${samples_file} to ${queue_name}"
