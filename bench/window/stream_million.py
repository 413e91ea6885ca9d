#!/usr/bin/env python3
"""Streams one very long completion through a sliding KV window and records,
over time, tokens/s and the server's KV blocks in use and resident memory.

A benchmark, not a test: with `kv_window = W` a request's KV memory is
bounded (ceil(W / block_size) + 1 blocks) however long it runs, so the
server's RSS and KV usage must stay flat while a million tokens go by.

    build/server/alibi-server --model models/alibi-tiny-en &
    /usr/bin/python3 bench/window/stream_million.py --tokens 1000000 \
        --window 1024 --out bench/results/window_stream_1m.json

Reads the server's metrics endpoint for alibi_kv_cache_blocks{state="used"}
and alibi_device_memory_used_bytes (the process RSS on the CPU backend).
Needs Debian's python3-grpcio and python3-protobuf, and protoc.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "client", "examples", "python"))
from alibi_client import load_protos, unary  # noqa: E402


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f
                     if l.startswith("model name")]
        return "%s, %d cores" % (names[0], len(names))
    except (OSError, IndexError):
        return "unknown"


def scrape(url):
    values = {}
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("alibi_kv_cache_blocks{") and 'state="used"' in line:
                values["kv_blocks_used"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("alibi_device_memory_used_bytes{"):
                values["rss_bytes"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("alibi_kv_cache_window_released_blocks_total{"):
                values["window_released_blocks"] = float(line.rsplit(" ", 1)[1])
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--metrics", default="http://localhost:9464/metrics")
    parser.add_argument("--tokens", type=int, default=1000000)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--prompt", default="Call me Ishmael.")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--server_flags", default="",
                        help="how the server was started, for the record")
    args = parser.parse_args()

    pb, _ = load_protos(REPO)
    channel = grpc.insecure_channel(args.address)
    prefix = "/alibi.v1.InferenceService/"
    info = unary(channel, prefix + "GetModelInfo", pb.GetModelInfoRequest,
                 pb.GetModelInfoResponse)(pb.GetModelInfoRequest(), timeout=60)
    stream = channel.unary_stream(
        prefix + "CompleteStream",
        request_serializer=pb.CompleteStreamRequest.SerializeToString,
        response_deserializer=pb.CompleteStreamResponse.FromString)
    params = pb.CompletionParams(text=args.prompt, max_tokens=args.tokens,
                                 kv_window=args.window)
    params.sampling.temperature = 1.0
    params.sampling.seed = args.seed
    params.sampling.ignore_eos = True

    state = {"tokens": 0, "done": False}
    samples = []
    start = time.monotonic()

    def sampler():
        last_tokens, last_t = 0, start
        while not state["done"]:
            time.sleep(args.interval)
            now = time.monotonic()
            sample = {"seconds": round(now - start, 1), "tokens": state["tokens"],
                      "tokens_per_s": round((state["tokens"] - last_tokens) /
                                            (now - last_t), 1)}
            sample.update(scrape(args.metrics))
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            last_tokens, last_t = state["tokens"], now

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    final = None
    for m in stream(pb.CompleteStreamRequest(params=params), timeout=48 * 3600):
        state["tokens"] += len(m.token_ids)
        if m.finish_reason:
            final = m
    state["done"] = True
    elapsed = time.monotonic() - start
    thread.join()
    rss = [s["rss_bytes"] for s in samples if "rss_bytes" in s]
    kv = [s["kv_blocks_used"] for s in samples if "kv_blocks_used" in s]
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        "machine": machine(), "server_flags": args.server_flags,
        "model": info.model, "device": info.device,
        "server_version": info.server_version,
        "kv_block_size": info.kv_block_size, "kv_num_blocks": info.kv_num_blocks,
        "window": args.window, "tokens": state["tokens"],
        "finish_reason": final.finish_reason if final else None,
        "seconds": round(elapsed, 1),
        "tokens_per_s": round(state["tokens"] / elapsed, 1),
        "kv_blocks_used_min_max": [min(kv), max(kv)] if kv else None,
        "bound_blocks": -(-args.window // info.kv_block_size) + 1,
        "rss_bytes_first_last_max": [rss[0], rss[-1], max(rss)] if rss else None,
        "samples": samples,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))


if __name__ == "__main__":
    main()
