#!/usr/bin/env bash
# `make run`: start `corral local`, launch a demo job through the scheduler
# API with `corral run`, show each task's states and output, then keep the
# cluster up until Ctrl-C, which stops everything.
set -euo pipefail
BIN=${BIN:-bin}
PORT=${PORT:-5050}

command -v curl >/dev/null || { echo "corral: make run needs curl" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corral-demo.XXXXXX")
"$BIN/corral" local --port "$PORT" --work_dir "$WORK" --logging_level WARNING &
LOCAL=$!
stop() {
  trap - INT TERM EXIT
  # The agent destroys its containers on the way out.
  kill -TERM "$LOCAL" 2>/dev/null || true
  wait "$LOCAL" 2>/dev/null || true
  rm -rf "$WORK"
  echo "corral: stopped; nothing left running."
}
trap stop INT TERM EXIT

# Up means: the master answers and its agent has registered. A corral local
# that exits (the port is taken, say) is reported rather than waited for.
up=""
for _ in $(seq 1 300); do
  if ! kill -0 "$LOCAL" 2>/dev/null; then
    echo "corral: corral local exited during start-up (is port $PORT in use? try: make run PORT=5055)" >&2
    exit 1
  fi
  if curl -fsS "http://127.0.0.1:$PORT/state" 2>/dev/null | grep -Eq '"activated_slaves": *[1-9]'; then
    up=1
    break
  fi
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "corral: no agent registered with the master on port $PORT within 30s" >&2
  exit 1
fi

echo "== Corral is up: master http://127.0.0.1:$PORT (state: http://127.0.0.1:$PORT/state)"
echo "== Demo job: three tasks through the v1 scheduler API"
for i in 1 2 3; do
  if ! out=$("$BIN/corral" run --master "127.0.0.1:$PORT" --name "demo-$i" \
      --command "echo \"hello from task $i on \$(hostname), pid \$\$\"" \
      --resources 'cpus:0.1;mem:32'); then
    echo "$out"
    echo "   demo task $i did not finish (see above)"
    continue
  fi
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
