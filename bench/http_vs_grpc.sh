#!/usr/bin/env bash
# The OpenAI-compatible HTTP API's added latency against gRPC, side by side in
# one run on one server: alibi-bench drives the same workload (same seed, so
# the same prompts) through --backend grpc and --backend openai in alternating
# rounds, one request at a time, and the script reports each API's median
# TTFT and the median of the per-round differences.
#
# Two modes, because the prompts are the same for both APIs:
#   cold (default): the prefix cache is off, every request computes its whole
#     prompt (TTFT = prefill + one decode step + the transport);
#   WARM=1: the prefix cache is on and a warm-up pass sends every round's
#     prompts first, so every measured request, of either API, finds all but
#     its last prompt block cached: the server's work is the same small step
#     for both, and the difference is the transport's, with less noise.
#
#   [WARM=1] bench/http_vs_grpc.sh [ROUNDS] [REQUESTS_PER_ROUND] [INPUT_LEN] [-- server flags]
#
# Needs a build (scripts/build.sh). Take the benchmark lock first (see
# the shared-machine rules); the machine should be otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-6}
per_round=${2:-50}
input_len=${3:-128}
shift $(($# < 3 ? $# : 3))
[[ ${1:-} == -- ]] && shift
build=${ALIBI_BUILD_DIR:-build}
work=$(mktemp -d)
prefix_caching=false
[[ -n ${WARM:-} ]] && prefix_caching=true
trap 'kill "$server_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$build/server/alibi-server" --host=127.0.0.1 --port=0 --metrics_port=-1 \
  --http_host=127.0.0.1 --http_port=0 --port_file="$work/ports.json" \
  --enable_prefix_caching="$prefix_caching" "$@" \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do
  [[ -s $work/ports.json ]] && curl -sf "http://127.0.0.1:$(
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_port"])' "$work/ports.json")/health" \
    >/dev/null && break
  sleep 0.1
done
read -r grpc_port http_port < <(python3 -c \
  'import json,sys; p=json.load(open(sys.argv[1])); print(p["port"], p["http_port"])' "$work/ports.json")

common=(--num_requests "$per_round" --concurrency 1 --input_len "$input_len"
  --output_len 16 --json_requests --progress=false)
# Warm-up (first allocations, page faults; WARM=1: every round's prompts),
# not reported.
"$build/client/alibi-bench" --address "127.0.0.1:$grpc_port" "${common[@]}" --seed 999 >/dev/null 2>&1
"$build/client/alibi-bench" --backend openai --address "127.0.0.1:$http_port" "${common[@]}" \
  --seed 999 >/dev/null 2>&1
if [[ -n ${WARM:-} ]]; then
  for r in $(seq "$rounds"); do
    "$build/client/alibi-bench" --address "127.0.0.1:$grpc_port" "${common[@]}" --seed "$r" \
      >/dev/null 2>&1
  done
fi
# The server's own TTFT histogram (arrival in the engine to first token),
# scraped around every run, splits each API's TTFT into the engine's part and
# the rest: the transport and the frontend, both ways.
scrape() { curl -sf "http://127.0.0.1:$http_port/metrics" >"$1"; }
for r in $(seq "$rounds"); do
  scrape "$work/grpc-$r.before"
  "$build/client/alibi-bench" --address "127.0.0.1:$grpc_port" "${common[@]}" --seed "$r" \
    --json "$work/grpc-$r.json" >/dev/null 2>&1
  scrape "$work/grpc-$r.after"
  scrape "$work/openai-$r.before"
  "$build/client/alibi-bench" --backend openai --address "127.0.0.1:$http_port" "${common[@]}" \
    --seed "$r" --json "$work/openai-$r.json" >/dev/null 2>&1
  scrape "$work/openai-$r.after"
done

python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def ttfts(path):
    report = json.load(open(path))
    assert report["failed"] == 0, f"{path}: {report['failed']} requests failed"
    return [r["ttft_ms"] for r in report["requests"]], report
def server_ttft_sum(path):
    total = 0.0
    for line in open(path):
        if line.startswith("alibi_time_to_first_token_seconds_sum{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
def overhead_ms(api, r, client):
    # Mean client TTFT minus mean server TTFT over the run's requests.
    server = (server_ttft_sum(f"{work}/{api}-{r}.after") -
              server_ttft_sum(f"{work}/{api}-{r}.before")) / len(client) * 1e3
    return statistics.fmean(client) - server
all_ = {"grpc": [], "openai": []}
over = {"grpc": [], "openai": []}
diffs = []
print(f"{'round':>5} {'grpc median':>12} {'openai median':>14} {'difference':>11}   (TTFT, ms)")
for r in range(1, rounds + 1):
    g, _ = ttfts(f"{work}/grpc-{r}.json")
    o, rep = ttfts(f"{work}/openai-{r}.json")
    all_["grpc"] += g
    all_["openai"] += o
    d = statistics.median(o) - statistics.median(g)
    diffs.append(d)
    over["grpc"].append(overhead_ms("grpc", r, g))
    over["openai"].append(overhead_ms("openai", r, o))
    print(f"{r:>5} {statistics.median(g):>12.3f} {statistics.median(o):>14.3f} {d:>+11.3f}"
          f"   outside the engine: grpc {over['grpc'][-1]:.3f}, openai {over['openai'][-1]:.3f}")
print()
for k in ("grpc", "openai"):
    v = sorted(all_[k])
    print(f"{k:>6}: {len(v)} requests, TTFT median {statistics.median(v):.3f} ms, "
          f"p10 {v[len(v) // 10]:.3f}, p90 {v[len(v) * 9 // 10]:.3f}")
print(f"median TTFT difference (openai - grpc), over all requests: "
      f"{statistics.median(all_['openai']) - statistics.median(all_['grpc']):+.3f} ms")
print(f"median of the per-round differences: {statistics.median(diffs):+.3f} ms")
g, o = statistics.median(over["grpc"]), statistics.median(over["openai"])
print(f"TTFT outside the engine (client mean - server mean, median over rounds): "
      f"grpc {g:.3f} ms, openai {o:.3f} ms: the HTTP path adds {o - g:+.3f} ms")
print(f"server: {rep['server']['model']} {rep['server']['server_version']}, "
      f"{len(all_['grpc']) // rounds} requests x {rounds} rounds per API, one at a time")
EOF
