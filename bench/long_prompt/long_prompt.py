#!/usr/bin/env python3
"""Short requests next to one very long prompt: their time to first token,
and the engine's step-time distribution, while the long prompt is prefilled.

A benchmark, not a test. The server caps each step's attention work
(--max_step_attention_pairs) and prompt-logit rows (--max_step_logit_rows),
so a long prompt is prefilled in chunks that shrink as its context grows and
no step stalls the others.

    build/server/alibi-server --model models/alibi-tiny-en &
    /usr/bin/python3 bench/long_prompt/long_prompt.py --long_tokens 32768 \
        --out bench/results/long_prompt_32k.json

Needs Debian's python3-grpcio and python3-protobuf, and protoc.
"""

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.request

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "client", "examples", "python"))
from alibi_client import load_protos, unary  # noqa: E402


def step_histogram(url):
    buckets, total, count = {}, 0.0, 0
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("alibi_step_duration_seconds_bucket{"):
                le = line.split('le="')[1].split('"')[0]
                buckets[le] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("alibi_step_duration_seconds_sum{"):
                total = float(line.rsplit(" ", 1)[1])
            elif line.startswith("alibi_step_duration_seconds_count{"):
                count = float(line.rsplit(" ", 1)[1])
    return buckets, total, count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--metrics", default="http://localhost:9464/metrics")
    parser.add_argument("--long_tokens", type=int, default=32768)
    parser.add_argument("--long_rpc", choices=("score", "complete"),
                        default="complete")
    parser.add_argument("--short_interval", type=float, default=0.5)
    parser.add_argument("--short_max_tokens", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    pb, _ = load_protos(REPO)
    channel = grpc.insecure_channel(args.address, options=[
        ("grpc.max_receive_message_length", 512 << 20),
        ("grpc.max_send_message_length", 512 << 20)])
    prefix = "/alibi.v1.InferenceService/"
    complete = unary(channel, prefix + "Complete", pb.CompleteRequest,
                     pb.CompleteResponse)
    score = unary(channel, prefix + "Score", pb.ScoreRequest, pb.ScoreResponse)
    info = unary(channel, prefix + "GetModelInfo", pb.GetModelInfoRequest,
                 pb.GetModelInfoResponse)(pb.GetModelInfoRequest(), timeout=60)
    rng = random.Random(7)
    long_ids = [rng.randrange(3, min(info.vocab_size, 30000))
                for _ in range(args.long_tokens)]
    before = step_histogram(args.metrics)

    long_done = {}

    def long_call():
        start = time.monotonic()
        if args.long_rpc == "score":
            r = score(pb.ScoreRequest(token_ids=long_ids), timeout=24 * 3600)
        else:
            p = pb.CompletionParams(token_ids=long_ids, max_tokens=1)
            r = complete(pb.CompleteRequest(params=p), timeout=24 * 3600)
        long_done["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=long_call)
    thread.start()
    ttfts = []
    while thread.is_alive():
        p = pb.CompletionParams(text="The quick brown fox",
                                max_tokens=args.short_max_tokens)
        p.sampling.ignore_eos = True
        start = time.monotonic()
        r = complete(pb.CompleteRequest(params=p), timeout=600)
        ttft = r.timings.time_to_first_token
        ttfts.append(ttft.seconds + ttft.nanos / 1e9)
        time.sleep(max(0.0, args.short_interval - (time.monotonic() - start)))
    thread.join()
    after = step_histogram(args.metrics)
    steps = after[2] - before[2]
    buckets = {le: after[0][le] - before[0].get(le, 0.0) for le in after[0]}
    result = {
        "model": info.model, "device": info.device,
        "long_tokens": args.long_tokens, "long_rpc": args.long_rpc,
        "long_seconds": round(long_done.get("seconds", 0.0), 1),
        "short_requests": len(ttfts),
        "short_ttft_s": {
            "median": round(statistics.median(ttfts), 3) if ttfts else None,
            "p99": round(sorted(ttfts)[int(0.99 * (len(ttfts) - 1))], 3)
            if ttfts else None,
            "max": round(max(ttfts), 3) if ttfts else None},
        "steps": steps,
        "step_seconds_mean": round((after[1] - before[1]) / steps, 4)
        if steps else None,
        "step_duration_buckets": buckets,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
