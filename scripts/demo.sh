#!/usr/bin/env bash
# `make run`: start `corral local`, launch a demo job through the scheduler
# API with `corral run`, show each task's states and output, then keep the
# cluster up until Ctrl-C, which stops everything.
set -euo pipefail
BIN=${BIN:-bin}
PORT=${PORT:-5050}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/corral-demo.XXXXXX")

"$BIN/corral" local --port "$PORT" --work_dir "$WORK" --logging_level WARNING &
LOCAL=$!
stop() {
  trap - INT TERM EXIT
  kill -TERM "$LOCAL" 2>/dev/null || true
  wait "$LOCAL" 2>/dev/null || true
  rm -rf "$WORK"
  echo "corral: stopped; nothing left running."
}
trap stop INT TERM EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== Corral is up: master http://127.0.0.1:$PORT (state: http://127.0.0.1:$PORT/state)"
echo "== Demo job: three tasks through the v1 scheduler API"
for i in 1 2 3; do
  out=$("$BIN/corral" run --master "127.0.0.1:$PORT" --name "demo-$i" \
      --command "echo \"hello from task $i on \$(hostname), pid \$\$\"" \
      --resources 'cpus:0.1;mem:32')
  echo "$out"
  sandbox=$(printf '%s\n' "$out" | sed -n 's/^Sandbox: //p')
  if [ -n "$sandbox" ] && [ -f "$sandbox/stdout" ]; then
    echo "   output: $(cat "$sandbox/stdout")"
  fi
done
echo
echo "== Try it: $BIN/corral run --master 127.0.0.1:$PORT --name hello --command 'echo hello' --resources 'cpus:0.1;mem:32'"
echo "== Ctrl-C stops the cluster."
wait "$LOCAL"
