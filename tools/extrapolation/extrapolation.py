#!/usr/bin/env python3
"""Held-out perplexity at 1x-16x the training length, through the server.

Train short, test long: asks a running alibi-server (its Tokenize and Score
RPCs, nothing else) for the perplexity of the held-out texts in windows of
L = 128, 256, 512, 1024, 2048 tokens, exactly as tools/train/README.md
("Extrapolation: exactly what is measured") defines it, and puts the result
next to the sinusoidal twin's numbers that the training script computed
(tools/train/extrapolation.json): a table (markdown and JSON) and a PNG plot.

    scripts/serve.sh &        # the default model, models/alibi-tiny-en
    /usr/bin/python3 tools/extrapolation/extrapolation.py --address localhost:50051

Needs Debian's python3-grpcio, python3-protobuf, python3-matplotlib and protoc.
"""

import argparse
import concurrent.futures
import json
import math
import os
import sys

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "client", "examples", "python"))
sys.path.insert(0, os.path.join(REPO, "tools", "train"))
from alibi_client import load_protos, unary  # noqa: E402
import corpora  # noqa: E402  (the training script's document split)

EOS = 2  # </s>, appended after every document (as the training script does)
LENGTHS = (128, 256, 512, 1024, 2048)


def token_stream(tokenize, pb, documents, eval_tokens):
    ids = []
    for doc in documents:
        ids.extend(tokenize(pb.TokenizeRequest(text=doc), timeout=600).token_ids)
        ids.append(EOS)
        if len(ids) >= eval_tokens:
            break
    if len(ids) < eval_tokens:
        sys.exit(f"error: only {len(ids)} held-out tokens, wanted {eval_tokens}")
    return ids[:eval_tokens]


def window_terms(score, pb, stream, length, parallel):
    """Sum of the Score RPC's token_logprobs over every window, and their count."""
    windows = [stream[i:i + length] for i in range(0, len(stream), length)]

    def one(window):
        response = score(pb.ScoreRequest(token_ids=window), timeout=3600)
        if len(response.token_logprobs) != len(window) - 1:
            raise RuntimeError("Score returned the wrong number of log-probs")
        return math.fsum(response.token_logprobs), len(response.token_logprobs)

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(one, windows))
    return math.fsum(r[0] for r in results), sum(r[1] for r in results)


def plot(table, twin, path, train_len):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, name, title in zip(axes, ("sotu_2000_2021", "moby_dick"),
                               ("State of the Union 2000-2021", "Moby-Dick")):
        ax.plot(LENGTHS, [table[name][str(n)] for n in LENGTHS], "o-",
                label="ALiBi (alibi-server Score RPC)")
        if twin is not None:
            ax.plot(LENGTHS, [twin[name][str(n)] for n in LENGTHS], "s--",
                    label="sinusoidal twin (training script)")
        ax.axvline(train_len, color="gray", linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(LENGTHS, [str(n) for n in LENGTHS])
        ax.set_xlabel("evaluation window (tokens); dotted: training length")
        ax.set_ylabel("held-out perplexity")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--corpora", default=str(corpora.CORPORA))
    parser.add_argument("--eval_tokens", type=int, default=65536)
    parser.add_argument("--parallel", type=int, default=8,
                        help="Score calls in flight (the server batches them)")
    parser.add_argument("--train_len", type=int, default=128)
    parser.add_argument("--twin", default=os.path.join(
        REPO, "tools", "train", "extrapolation.json"),
        help="the training script's table (sinusoidal twin, and its own ALiBi "
             "column to compare with)")
    parser.add_argument("--out", default=os.path.join(HERE, "extrapolation.json"))
    parser.add_argument("--plot", default=os.path.join(HERE, "extrapolation.png"))
    args = parser.parse_args()

    pb, _ = load_protos(REPO)
    channel = grpc.insecure_channel(
        args.address, options=[("grpc.max_receive_message_length", 256 << 20),
                               ("grpc.max_send_message_length", 256 << 20)])
    prefix = "/alibi.v1.InferenceService/"
    tokenize = unary(channel, prefix + "Tokenize", pb.TokenizeRequest,
                     pb.TokenizeResponse)
    score = unary(channel, prefix + "Score", pb.ScoreRequest, pb.ScoreResponse)
    info = unary(channel, prefix + "GetModelInfo", pb.GetModelInfoRequest,
                 pb.GetModelInfoResponse)(pb.GetModelInfoRequest(), timeout=60)

    documents = corpora.documents(args.corpora)
    streams = {name: token_stream(tokenize, pb, documents[name], args.eval_tokens)
               for name in ("sotu_2000_2021", "moby_dick")}
    table = {name: {} for name in list(streams) + ["both"]}
    for length in LENGTHS:
        both_sum, both_count = 0.0, 0
        for name, stream in streams.items():
            total, count = window_terms(score, pb, stream, length, args.parallel)
            table[name][str(length)] = math.exp(-total / count)
            both_sum += total
            both_count += count
        table["both"][str(length)] = math.exp(-both_sum / both_count)
        print(f"L={length}: " + ", ".join(
            f"{n} {table[n][str(length)]:.2f}" for n in table), flush=True)

    twin = reference = None
    twin_table = None
    if os.path.exists(args.twin):
        with open(args.twin) as f:
            twin_table = json.load(f)
        if twin_table.get("eval_tokens_per_corpus") != args.eval_tokens:
            print(f"note: {args.twin} was computed on "
                  f"{twin_table.get('eval_tokens_per_corpus')} tokens per text, "
                  f"not {args.eval_tokens}; leaving it out", file=sys.stderr)
            twin_table = None
    if twin_table is not None:
        results = twin_table["results"]

        def perplexities(position):
            return {name: {l: v["ppl"] for l, v in per_length.items()}
                    for name, per_length in results[position].items()}

        twin = perplexities("sinusoidal")
        reference = perplexities("alibi")
    result = {
        "model": info.model,
        "server_version": info.server_version,
        "device": info.device,
        "eval_tokens": args.eval_tokens,
        "lengths": list(LENGTHS),
        "definition": "tools/train/README.md, 'Extrapolation: exactly what is "
                      "measured'; ALiBi column through alibi-server's Score RPC",
        "alibi_server": table,
        "sinusoidal_twin": twin,
    }
    if reference is not None:
        result["max_relative_difference_vs_training_script"] = max(
            abs(table[n][str(l)] / reference[n][str(l)] - 1.0)
            for n in table for l in LENGTHS if n in reference)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    plot(table, twin, args.plot, args.train_len)

    base = str(args.train_len)
    print("\n| window | ALiBi SOTU | ALiBi Moby-Dick | sinusoidal SOTU | "
          "sinusoidal Moby-Dick |\n|---|---|---|---|---|")
    for length in LENGTHS:
        l = str(length)
        cells = [f"{table[n][l]:.1f}" for n in ("sotu_2000_2021", "moby_dick")]
        cells += ([f"{twin[n][l]:.1f}" for n in ("sotu_2000_2021", "moby_dick")]
                  if twin else ["", ""])
        print(f"| {length} ({length // args.train_len}x) | " + " | ".join(cells) + " |")
    print(f"\nALiBi at 8x vs 1x: " + ", ".join(
        f"{n} {100 * (table[n][str(8 * args.train_len)] / table[n][base] - 1):+.1f}%"
        for n in table))
    if "max_relative_difference_vs_training_script" in result:
        print("max relative difference from the training script's ALiBi column: "
              f"{result['max_relative_difference_vs_training_script']:.2e}")


if __name__ == "__main__":
    main()
