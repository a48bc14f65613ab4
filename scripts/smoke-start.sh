#!/usr/bin/env bash
# Starts `npm start` on embedded defaults in a fresh data folder, waits until GET /logins
# serves the 99 sample rows, then stops it with SIGTERM and expects a clean exit.
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir="$(mktemp -d)"
port="${SMOKE_PORT:-3917}"
log="${data_dir}/service.log"
env -u DATABASE_URL -u SQS_QUEUE_URL DATA_DIR="${data_dir}" PORT="${port}" EMBEDDED_QUEUE_PORT=0 NODE_ENV=development \
  node --import tsx src/server.ts >"${log}" 2>&1 &
pid=$!
cleanup() { kill "${pid}" 2>/dev/null || true; rm -rf "${data_dir}"; }
trap cleanup EXIT

rows=0
for _ in $(seq 1 120); do
  if [ -f "${data_dir}/secrets.json" ]; then
    key="$(node -p "require('${data_dir}/secrets.json').demoApiKey")"
    rows="$(curl -fsS -H "Authorization: Bearer ${key}" "http://127.0.0.1:${port}/logins?limit=1000" 2>/dev/null \
      | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).items.length)}catch{console.log(0)}})' || echo 0)"
    [ "${rows}" = "99" ] && break
  fi
  kill -0 "${pid}" 2>/dev/null || { echo "service exited early:"; cat "${log}"; exit 1; }
  sleep 0.5
done
if [ "${rows}" != "99" ]; then
  echo "expected 99 rows from /logins, got ${rows}"; cat "${log}"; exit 1
fi
echo "npm start: /logins serves ${rows} rows"
# No raw ip or device_id of the samples may appear in anything the service printed.
leaks="$(node -e '
  const log = require("fs").readFileSync(process.argv[1], "utf8")
  const samples = require("./fixtures/fetch-sample-logins.json")
  const raw = samples.flatMap((s) => [s.ip, s.device_id]).filter(Boolean)
  console.log(raw.filter((v) => log.includes(v)).length)' "${log}")"
if [ "${leaks}" != "0" ]; then echo "${leaks} raw sample values appear in the service output"; exit 1; fi
echo "npm start: no raw ip or device_id in the service output"
kill -TERM "${pid}"
status=0
wait "${pid}" || status=$?
if [ "${status}" != "0" ]; then echo "service exited with ${status} after SIGTERM"; cat "${log}"; exit 1; fi
echo "npm start: clean exit after SIGTERM"
