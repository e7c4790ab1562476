#!/usr/bin/env bash
# Schemathesis against a fresh `serve --strict` on a free loopback port: every check, every phase.
#
#   benchmarks/schemathesis.sh [OUTPUT]          (default OUTPUT: /tmp/schemathesis-run.txt)
#
# Needs schemathesis in .venv, installed for the run only, with hypothesis kept at 6.170.9:
#   .venv/bin/pip install schemathesis 'hypothesis==6.170.9'
# The sandbox gets a high rate limit so the owner key's 300/min does not turn the run into 429s.
# Bounded: 20 examples per operation and phase, 420 s in all.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/schemathesis-run.txt}"
PY=.venv/bin/python
PORT="$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
KEY="om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"

.venv/bin/opsmerge-sandbox serve --host 127.0.0.1 --port "$PORT" --strict --rate-limit 100000 \
  >"$OUT.serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  $PY -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" \
    2>/dev/null && break
  sleep 0.2
done

set +e
.venv/bin/schemathesis run "http://127.0.0.1:$PORT/api/docs/openapi.json" \
  --url "http://127.0.0.1:$PORT/api/v1" \
  -H "Authorization: Bearer $KEY" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples 20 \
  --max-time 420 \
  --request-timeout 10 \
  --seed 1 \
  --continue-on-failure \
  --no-color 2>&1 | tee "$OUT"
STATUS=${PIPESTATUS[0]}
set -e
echo "schemathesis exit status: $STATUS (output in $OUT, sandbox log in $OUT.serve.log)"
exit "$STATUS"
