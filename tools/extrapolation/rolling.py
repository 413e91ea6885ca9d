#!/usr/bin/env python3
"""Rolling log-likelihood of whole texts through a sliding KV window.

With `kv_window = W`, alibi-server scores every position of a text of any
length in one pass of chunked prefill while the window slides (ScoreStream):
position i sees positions i - W + 1 .. i at every layer, the KV cache holds
O(W) tokens, cost O(N x W). This tool measures, on the held-out texts of the
default model (all of Moby-Dick, the State of the Union addresses 2000-2021):

  rolling   one ScoreStream with kv_window = W over the whole text;
  strided   Hugging Face's strided perplexity: independent windows of W
            tokens, stride W/2, each re-encoded from scratch by a plain Score
            (every token after the first window is scored with W/2..W-1
            tokens of context; cost O(N x W x W / stride));
  full      one plain Score of the whole text (full context), when the text
            fits the server's KV pool (--max_model_len);

for W = 128, 512, 2048: perplexity, tokens scored and wall time.

    scripts/serve.sh &
    /usr/bin/python3 tools/extrapolation/rolling.py --address localhost:50051

Needs Debian's python3-grpcio and python3-protobuf, and protoc.
"""

import argparse
import concurrent.futures
import json
import math
import os
import subprocess
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "client", "examples", "python"))
sys.path.insert(0, os.path.join(REPO, "tools", "train"))
from alibi_client import load_protos, unary  # noqa: E402
import corpora  # noqa: E402

EOS = 2  # </s>, after every document, as the training script does
WINDOWS = (128, 512, 2048)


def token_stream(tokenize, pb, documents):
    ids = []
    for doc in documents:
        ids.extend(tokenize(pb.TokenizeRequest(text=doc), timeout=600).token_ids)
        ids.append(EOS)
    return ids


def rolling(score_stream, pb, ids, window):
    request = pb.ScoreStreamRequest(
        score=pb.ScoreRequest(token_ids=ids, kv_window=window))
    start = time.monotonic()
    total, count, messages, last = 0.0, 0, 0, None
    for m in score_stream(request, timeout=24 * 3600):
        if m.offset != count:
            raise RuntimeError(f"offset {m.offset}, expected {count}")
        total = math.fsum([total] + list(m.token_logprobs))
        count += len(m.token_logprobs)
        messages += 1
        if m.done:
            last = m
    if last is None or count != len(ids) - 1:
        raise RuntimeError("ScoreStream ended early")
    return {"perplexity": math.exp(-total / count), "scored": count,
            "messages": messages, "seconds": time.monotonic() - start}


def strided(score, pb, ids, window, parallel):
    """Hugging Face's recipe: windows of `window` tokens every `window/2`;
    each window's tokens not scored by an earlier window count. The windows
    are independent, so `parallel` of them are in flight (the server batches
    them)."""
    stride = window // 2
    spans = []  # (begin, end, index in the window's log-probs of the first new)
    scored_up_to, begin = 1, 0
    while scored_up_to < len(ids):
        end = min(begin + window, len(ids))
        spans.append((begin, end, scored_up_to - (begin + 1)))
        scored_up_to = end
        begin += stride

    def one(span):
        b, e, first_new = span
        response = score(pb.ScoreRequest(token_ids=ids[b:e]), timeout=3600)
        new = list(response.token_logprobs)[first_new:]
        return math.fsum(new), len(new)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(one, spans))
    total = math.fsum(r[0] for r in results)
    count = sum(r[1] for r in results)
    return {"perplexity": math.exp(-total / count), "scored": count,
            "tokens_encoded": sum(e - b for b, e, _ in spans),
            "seconds": time.monotonic() - start}


def full(score_stream, pb, ids):
    request = pb.ScoreStreamRequest(score=pb.ScoreRequest(token_ids=ids,
                                                          kv_window=0))
    start = time.monotonic()
    total, count = 0.0, 0
    for m in score_stream(request, timeout=24 * 3600):
        total = math.fsum([total] + list(m.token_logprobs))
        count += len(m.token_logprobs)
    return {"perplexity": math.exp(-total / count), "scored": count,
            "seconds": time.monotonic() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--corpora", default=str(corpora.CORPORA))
    parser.add_argument("--windows", default=",".join(map(str, WINDOWS)))
    parser.add_argument("--parallel", type=int, default=8,
                        help="strided Score calls in flight")
    parser.add_argument("--skip_full", action="store_true",
                        help="leave out the full-context Score (O(N^2))")
    parser.add_argument("--texts", default="sotu_2000_2021,moby_dick")
    parser.add_argument("--out", default=os.path.join(HERE, "rolling.json"))
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",") if w]  # may be none

    pb, _ = load_protos(REPO)
    channel = grpc.insecure_channel(
        args.address, options=[("grpc.max_receive_message_length", 512 << 20),
                               ("grpc.max_send_message_length", 512 << 20)])
    prefix = "/alibi.v1.InferenceService/"
    tokenize = unary(channel, prefix + "Tokenize", pb.TokenizeRequest,
                     pb.TokenizeResponse)
    score = unary(channel, prefix + "Score", pb.ScoreRequest, pb.ScoreResponse)
    score_stream = channel.unary_stream(
        prefix + "ScoreStream",
        request_serializer=pb.ScoreStreamRequest.SerializeToString,
        response_deserializer=pb.ScoreStreamResponse.FromString)
    info = unary(channel, prefix + "GetModelInfo", pb.GetModelInfoRequest,
                 pb.GetModelInfoResponse)(pb.GetModelInfoRequest(), timeout=60)

    documents = corpora.documents(args.corpora)
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "commit": subprocess.run(
                  ["git", "-C", REPO, "rev-parse", "HEAD"],
                  capture_output=True, text=True).stdout.strip(),
              "model": info.model, "device": info.device,
              "server_version": info.server_version,
              "max_context_length": info.max_context_length,
              "texts": {}}
    for name in args.texts.split(","):
        ids = token_stream(tokenize, pb, documents[name])
        entry = {"tokens": len(ids), "rolling": {}, "strided": {}}
        for w in windows:
            entry["rolling"][str(w)] = rolling(score_stream, pb, ids, w)
            entry["strided"][str(w)] = strided(score, pb, ids, w,
                                               args.parallel)
            print(f"{name} W={w}: rolling {entry['rolling'][str(w)]}, "
                  f"strided {entry['strided'][str(w)]}", flush=True)
        if not args.skip_full and len(ids) <= info.max_context_length:
            entry["full"] = full(score_stream, pb, ids)
            print(f"{name} full context: {entry['full']}", flush=True)
        result["texts"][name] = entry
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print("\n| text (tokens) | W | rolling ppl | rolling s | strided ppl | "
          "strided s | tokens encoded (strided) |\n|---|---|---|---|---|---|---|")
    for name, entry in result["texts"].items():
        for w in windows:
            r, s = entry["rolling"][str(w)], entry["strided"][str(w)]
            print(f"| {name} ({entry['tokens']}) | {w} | {r['perplexity']:.1f} | "
                  f"{r['seconds']:.0f} | {s['perplexity']:.1f} | "
                  f"{s['seconds']:.0f} | {s['tokens_encoded']} |")
        if "full" in entry:
            print(f"| {name} ({entry['tokens']}) | full | "
                  f"{entry['full']['perplexity']:.1f} | "
                  f"{entry['full']['seconds']:.0f} | | | |")


if __name__ == "__main__":
    main()
