#!/usr/bin/python3
"""Train alibi-serve's default model (a small BLOOM with ALiBi) and its sinusoidal-position twin.

    /usr/bin/python3 tools/train/train.py --out models/alibi-tiny-en

Steps (all deterministic for a fixed seed, thread count and PyTorch build):
 1. hash the corpora; split the State of the Union file into training (1790-1999) and held-out (2000-2021)
    addresses; tokenize with the fixture BLOOM-pipeline tokenizer (verified against the Hugging Face vectors first);
 2. train the ALiBi model and the sinusoidal twin on the same data order for the same number of steps;
 3. round both to F16; write the ALiBi one as a Hugging Face BLOOM checkpoint (config.json, model.safetensors,
    tokenizer.json) with a float64 log-prob reference, samples and a training record;
 4. measure held-out perplexity at 1x..16x the training length for both models (tools/train/extrapolation.*).

See tools/train/README.md for the exact definitions.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import corpora
import safetensors_io
from bpe import BloomTokenizer, verify
from model import BloomLM

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(__file__).resolve().parent
TOKENIZER = REPO / "tests/data/models/tiny-bloom/tokenizer.json"
VECTORS = REPO / "tests/data/tokenizers/bloom-style.vectors.json"

EVAL_LENGTHS = [128, 256, 512, 1024, 2048]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="model directory to write (e.g. models/alibi-tiny-en)")
    p.add_argument("--report-dir", default=str(TOOLS), help="where extrapolation.json/.png go")
    p.add_argument("--cache", default=str(REPO / ".cache/train"), help="tokenized corpora and the twin's weights")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=240)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128, help="training length")
    p.add_argument("--batch", type=int, default=16, help="sequences per step")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=60, help="linear warmup steps, then cosine to --min-lr-ratio")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-tokens", type=int, default=65536,
                   help="held-out tokens per corpus for the extrapolation table (a multiple of 2048)")
    p.add_argument("--positions", default="alibi,sinusoidal",
                   help="which models to train; pilot runs may use just 'alibi'")
    p.add_argument("--reuse-cached", action="store_true",
                   help="skip training a model whose weights and run record are already in --cache and were made "
                        "with the same training hyperparameters (resumes an interrupted run)")
    return p.parse_args()


# ----------------------------------------------------------------------------------------------------------- data

def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_token_streams(tokenizer, cache_dir, hashes):
    """Token streams {train, sotu_2000_2021, moby_dick} (uint16), cached under cache_dir by input hashes.

    Each document of corpora.documents() is encoded on its own and followed by </s>.
    """
    key = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"tokens-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    eos = tokenizer.special["</s>"]

    def stream(docs):
        ids = []
        for doc in docs:
            ids.extend(tokenizer.encode(doc))
            ids.append(eos)
        return np.asarray(ids, dtype=np.uint16)

    streams = {name: stream(docs) for name, docs in corpora.documents().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **streams)
    return streams


def epoch_batches(stream, seq_len, batch, seed, epoch):
    """One epoch: a seeded random offset, then the stream cut into (seq_len + 1)-token chunks overlapping by one
    token (every token is a target once), visited in a seeded random order, batch by batch."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    offset = int(torch.randint(0, seq_len, (1,), generator=g))
    n = (len(stream) - offset - 1) // seq_len
    starts = offset + seq_len * torch.randperm(n, generator=g)
    data = torch.from_numpy(stream.astype(np.int64))
    for b in range(n // batch):
        yield torch.stack([data[s:s + seq_len + 1] for s in starts[b * batch:(b + 1) * batch].tolist()])


# ------------------------------------------------------------------------------------------------------ training

def init_weights(model, n_layer, std=0.02):
    """BLOOM/Megatron-style init: N(0, 0.02) matrices, residual output projections scaled by 1/sqrt(2*n_layer),
    zero biases, unit layernorm gains."""
    for name, p in model.named_parameters():
        if p.dim() == 2:
            scale = 1 / math.sqrt(2 * n_layer) if name.endswith(("self_attention.dense.weight", "dense_4h_to_h.weight")) else 1
            nn.init.normal_(p, std=std * scale)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
        else:
            nn.init.ones_(p)


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(position, streams, args, vocab_size):
    """Train one model; returns it (fp32) and a record of the run."""
    torch.manual_seed(args.seed)
    model = BloomLM(vocab_size, args.hidden, args.heads, args.layers, position=position)
    init_weights(model, args.layers)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    probe = {name: fixed_windows(streams[name], args.seq_len, 32) for name in ("sotu_2000_2021", "moby_dick")}
    curve, smooth, step, epoch, t0 = [], None, 0, 0, time.time()
    while step < args.steps:
        for batch in epoch_batches(streams["train"], args.seq_len, args.batch, args.seed, epoch):
            if step == args.steps:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args)
            # bf16 autocast for the matmuls (weights, optimizer state and the loss stay fp32).
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step += 1
            smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
            if step % 100 == 0 or step == args.steps:
                point = {"step": step, "train_loss_ema": round(smooth, 4), "lr": lr_at(step - 1, args),
                         "elapsed_s": round(time.time() - t0, 1)}
                for name, windows in probe.items():
                    point[f"{name}_loss"] = round(mean_nll(model, windows, autocast=True), 4)
                curve.append(point)
                print(f"[{position}] " + " ".join(f"{k}={v:.4g}" for k, v in point.items()), flush=True)
        epoch += 1
    record = {"steps": step, "epochs_started": epoch, "tokens_seen": step * args.batch * args.seq_len,
              "train_wall_s": round(time.time() - t0, 1), "curve": curve}
    return model, record


# ---------------------------------------------------------------------------------------------------- evaluation

def fixed_windows(stream, length, count):
    """`count` windows of `length` tokens, evenly spaced over the stream (a fixed probe set)."""
    stride = (len(stream) - length) // count
    return torch.from_numpy(np.stack([stream[i * stride:i * stride + length] for i in range(count)]).astype(np.int64))


@torch.no_grad()
def window_nll(model, windows, autocast=False, tokens_per_batch=4096):
    """(sum of -log p(w[i+1] | w[0..i]) over every window and every i, number of terms).
    Each window is scored on its own, starting from an empty context."""
    total, count = 0.0, 0
    per_batch = max(1, tokens_per_batch // windows.shape[1])
    for b in range(0, len(windows), per_batch):
        chunk = windows[b:b + per_batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(chunk[:, :-1])
        logp = torch.log_softmax(logits.float(), dim=-1)
        total -= logp.gather(-1, chunk[:, 1:, None]).double().sum().item()
        count += chunk[:, 1:].numel()
    return total, count


def mean_nll(model, windows, autocast=False):
    total, count = window_nll(model, windows, autocast)
    return total / count


def extrapolation(models, streams, eval_tokens):
    """Perplexity at every evaluation length over the first `eval_tokens` tokens of each held-out stream, cut into
    non-overlapping windows (the same tokens for every length).  Per length: exp(total NLL / number of predicted
    tokens), where every window of L tokens predicts its tokens 1..L-1 from the window's own prefix."""
    assert eval_tokens % max(EVAL_LENGTHS) == 0
    table = {"lengths": EVAL_LENGTHS, "results": {}}
    for position, model in models.items():
        per_corpus = {name: {} for name in ("sotu_2000_2021", "moby_dick", "both")}
        for length in EVAL_LENGTHS:
            both_total, both_count = 0.0, 0
            for name in ("sotu_2000_2021", "moby_dick"):
                ids = torch.from_numpy(streams[name][:eval_tokens].astype(np.int64)).view(-1, length)
                total, count = window_nll(model, ids)
                per_corpus[name][length] = {"ppl": math.exp(total / count), "mean_nll": total / count,
                                            "windows": len(ids), "predicted_tokens": count}
                both_total, both_count = both_total + total, both_count + count
            per_corpus["both"][length] = {"ppl": math.exp(both_total / both_count), "mean_nll": both_total / both_count,
                                          "windows": 2 * eval_tokens // length, "predicted_tokens": both_count}
            print(f"[{position}] L={length} " + " ".join(f"{n}={per_corpus[n][length]['ppl']:.2f}" for n in per_corpus),
                  flush=True)
        table["results"][position] = per_corpus
    return table


def plot_extrapolation(table, path, train_len):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, corpus, title in zip(axes, ("sotu_2000_2021", "moby_dick"), ("State of the Union 2000-2021", "Moby-Dick")):
        for position, style in (("alibi", "o-"), ("sinusoidal", "s--")):
            if position in table["results"]:
                ys = [table["results"][position][corpus][L]["ppl"] for L in table["lengths"]]
                ax.plot(table["lengths"], ys, style, label=position)
        ax.axvline(train_len, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(table["lengths"], [str(L) for L in table["lengths"]])
        ax.set_xlabel("evaluation window (tokens); dotted: training length")
        ax.set_ylabel("perplexity")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("Train short (128), test long: held-out perplexity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@torch.no_grad()
def generate(model, tokenizer, prompt, new_tokens, temperature=None, top_k=None, seed=None):
    """Greedy (temperature None) or seeded top-k sampling; a full forward per step (no cache needed here)."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    ids = tokenizer.encode(prompt)
    eos = tokenizer.special["</s>"]
    for _ in range(new_tokens):
        logits = model(torch.tensor([ids]))[0, -1].double()
        if temperature is None:
            nxt = int(logits.argmax())
        else:
            top = torch.topk(logits / temperature, top_k)
            nxt = int(top.indices[torch.multinomial(torch.softmax(top.values, -1), 1, generator=g)])
        ids.append(nxt)
        if nxt == eos:
            break
    return tokenizer.decode(ids)


# ------------------------------------------------------------------------------------------------------- export

def rounded(model, dtype=torch.float16):
    """{name: tensor} rounded to `dtype` (what gets stored)."""
    state = {name: t.detach().to(dtype) for name, t in model.state_dict().items()}
    for name, t in state.items():
        assert torch.isfinite(t).all(), f"{name} does not fit {dtype}"
    return state


def load_stored(state, args, vocab_size, position, dtype):
    model = BloomLM(vocab_size, args.hidden, args.heads, args.layers, position=position).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    return model.eval()


def hf_config(args, tokenizer, vocab_size):
    return {
        "architectures": ["BloomForCausalLM"],
        "model_type": "bloom",
        "vocab_size": vocab_size,
        "hidden_size": args.hidden,
        "n_head": args.heads,
        "n_layer": args.layers,
        "layer_norm_epsilon": 1e-05,
        "apply_residual_connection_post_layernorm": False,
        "attention_softmax_in_fp32": True,
        "bos_token_id": tokenizer.special["<s>"],
        "eos_token_id": tokenizer.special["</s>"],
        "pad_token_id": tokenizer.special["<pad>"],
        "initializer_range": 0.02,
        "torch_dtype": "float16",
        "seq_length": args.seq_len,
        "use_cache": True,
        "pretraining_tp": 1,
        "slow_but_exact": False,
    }


def reference_texts():
    """Three held-out texts for the float64 reference: two short ones and one past the training length."""
    moby = corpora.read("moby-dick.txt")
    start = moby.index("Call me Ishmael.")
    first_sentence_end = moby.index("the world.", start) + len("the world.")
    paragraph_end = moby.index("\n\n", start)
    address_2000 = corpora.sotu_addresses()[-corpora.SOTU_HELDOUT_ADDRESSES]
    return [
        ("moby_first_sentence", moby[start:first_sentence_end]),
        ("sotu_2000_opening", address_2000[:address_2000.index("external threats.") + len("external threats.")]),
        ("moby_first_paragraph", moby[start:paragraph_end]),
    ]


@torch.no_grad()
def float64_reference(model64, tokenizer, texts):
    sequences = []
    for name, text in texts:
        ids = tokenizer.encode(text)
        logp = torch.log_softmax(model64(torch.tensor([ids]))[0], dim=-1)
        lps = [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
        sequences.append({"name": name, "text": text, "token_ids": ids, "prompt_logprobs": lps,
                          "sum_logprob": math.fsum(lps)})
    return sequences


def training_hyperparameters(args):
    """The arguments that determine a model's weights (evaluation and output paths excluded)."""
    return {k: v for k, v in vars(args).items()
            if k not in ("out", "report_dir", "cache", "eval_tokens", "positions", "reuse_cached")}


def main():
    args = parse_args()
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = BloomTokenizer(TOKENIZER)
    print(f"tokenizer: {verify(tokenizer, VECTORS)} Hugging Face vectors match", flush=True)
    vocab_size = len(tokenizer.id_to_token)
    inputs = {name: str(corpora.CORPORA / name) for name in corpora.FILES}
    inputs["tokenizer.json"] = str(TOKENIZER)
    hashes = {name: sha256(path) for name, path in inputs.items()}
    streams = load_token_streams(tokenizer, args.cache, hashes)
    print({k: len(v) for k, v in streams.items()}, flush=True)

    models, records = {}, {}
    for position in args.positions.split(","):
        weights = Path(args.cache) / f"{position}.safetensors"
        run_file = Path(args.cache) / f"{position}.run.json"
        cached = json.loads(run_file.read_text()) if run_file.exists() and weights.exists() else None
        if args.reuse_cached and cached and cached["hyperparameters"] == training_hyperparameters(args):
            print(f"[{position}] reusing {weights} (trained {cached['record']['train_wall_s']} s)", flush=True)
            state, records[position] = safetensors_io.load(weights), cached["record"]
        else:
            model, records[position] = train(position, streams, args, vocab_size)
            # Everything below uses the F16-rounded weights, i.e. exactly what is stored.
            state = rounded(model)
            safetensors_io.save(weights, state)
            run_file.write_text(json.dumps({"hyperparameters": training_hyperparameters(args),
                                            "record": records[position]}, indent=1) + "\n")
        models[position] = (state, load_stored(state, args, vocab_size, position, torch.float32))

    train_windows = fixed_windows(streams["train"], args.seq_len, 256)
    for position, (_, model) in models.items():
        records[position]["final_train_loss"] = mean_nll(model, train_windows)

    table = extrapolation({p: m for p, (_, m) in models.items()}, streams, args.eval_tokens)
    for position in models:
        records[position]["final_heldout_loss"] = {c: table["results"][position][c][args.seq_len]["mean_nll"]
                                                   for c in ("sotu_2000_2021", "moby_dick", "both")}
    table["definition"] = (
        f"For each held-out stream (docs encoded separately, each followed by </s> id 2) take its first "
        f"{args.eval_tokens} tokens and cut them into non-overlapping windows of L tokens. Each window is scored "
        f"alone from an empty context; it contributes log p(w[i+1] | w[0..i]) for i = 0..L-2 (L-1 terms, exactly "
        f"the Score RPC's token_logprobs). ppl = exp(-sum of all terms / number of terms); 'both' pools the two "
        f"streams. Weights: the F16-rounded stored weights, evaluated in float32.")
    table["eval_tokens_per_corpus"] = args.eval_tokens
    table["train_seq_len"] = args.seq_len
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "extrapolation.json").write_text(json.dumps(table, indent=1) + "\n")
    plot_extrapolation(table, report_dir / "extrapolation.png", args.seq_len)

    if "alibi" in models:
        state, model = models["alibi"]
        prompt = "In the beginning"
        samples = {"prompt": prompt, "greedy": generate(model, tokenizer, prompt, 60),
                   "sampled": [generate(model, tokenizer, prompt, 60, temperature=0.8, top_k=40, seed=s)
                               for s in range(3)],
                   "sampling": "temperature 0.8, top-k 40, torch.Generator seeds 0, 1, 2; float32"}
        safetensors_io.save(out / "model.safetensors", state)
        (out / "config.json").write_text(json.dumps(hf_config(args, tokenizer, vocab_size), indent=2) + "\n")
        shutil.copyfile(TOKENIZER, out / "tokenizer.json")
        model64 = load_stored(state, args, vocab_size, "alibi", torch.float64)
        reference = {"model": out.name,
                     "reference": "float64 forward of the stored F16 weights (HF BloomForCausalLM semantics) by "
                                  "tools/train/model.py; prompt_logprobs[i] = log p(token_ids[i+1] | token_ids[0..i])",
                     "sequences": float64_reference(model64, tokenizer, reference_texts())}
        (out / "reference.json").write_text(json.dumps(reference) + "\n")
    else:
        samples = None

    record = {
        "command": " ".join([sys.executable] + sys.argv),
        "date_utc": datetime.datetime.utcnow().isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "threads": args.threads, "seed": args.seed,
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in ("out", "report_dir", "cache", "reuse_cached")},
        "optimizer": "AdamW betas (0.9, 0.95), eps 1e-8; weight decay on matrices only; grad-norm clip; "
                     "linear warmup then cosine to min-lr-ratio * lr; bf16 autocast forward, fp32 weights",
        "inputs_sha256": hashes,
        "tokens": {k: int(len(v)) for k, v in streams.items()},
        "sotu_split": "addresses are the non-empty lines of sotu-1790-2021.txt (chronological, undated); "
                      f"training: all before the one opening '{corpora.SOTU_2000_OPENING}' (2000); held-out: the last "
                      f"{corpora.SOTU_HELDOUT_ADDRESSES} (2000-2021)",
        "vocab_size": vocab_size,
        "parameters": sum(t.numel() for t in next(iter(models.values()))[0].values()),
        "runs": records,
        "samples": samples,
        "total_wall_s": round(time.time() - t_start, 1),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "TRAINING.md").write_text(training_md(record, table))
    print(f"done in {record['total_wall_s']} s", flush=True)


def training_md(record, table):
    """A human-readable summary of training.json and extrapolation.json."""
    hp = record["hyperparameters"]
    lines = [
        "# alibi-tiny-en: how this checkpoint was made",
        "",
        "Generated by `tools/train/train.py` (see `tools/train/README.md`); the raw record is `training.json`.",
        "",
        f"- Command: `{record['command']}`",
        f"- Python {record['python']}, PyTorch {record['torch']}, NumPy {record['numpy']}, {record['threads']} threads,"
        f" seed {record['seed']}, finished {record['date_utc']} UTC, total wall time {record['total_wall_s']} s",
        f"- Architecture: BloomForCausalLM, ALiBi, hidden {hp['hidden']}, {hp['heads']} heads, {hp['layers']} layers, "
        f"vocab {record['vocab_size']}, {record['parameters']:,} parameters, stored F16",
        f"- Training: {hp['steps']} steps x {hp['batch']} sequences x {hp['seq_len']} tokens, peak lr {hp['lr']}, "
        f"warmup {hp['warmup']}, cosine to {hp['min_lr_ratio']} x peak, weight decay {hp['weight_decay']}, clip {hp['clip']}",
        f"- Optimizer: {record['optimizer']}",
        f"- Data: training = KJV Bible + State of the Union 1790-1999; held-out = State of the Union 2000-2021 + "
        f"Moby-Dick. Token counts: {record['tokens']}",
        f"- SOTU split: {record['sotu_split']}",
        "",
        "Input SHA-256:",
        "",
    ]
    lines += [f"- `{name}`: `{digest}`" for name, digest in record["inputs_sha256"].items()]
    lines += ["", "| model | train wall (s) | tokens seen | final train loss | held-out loss @128 (SOTU / Moby / both) |",
              "|---|---|---|---|---|"]
    for position, run in record["runs"].items():
        h = run["final_heldout_loss"]
        lines.append(f"| {position} | {run['train_wall_s']} | {run['tokens_seen']:,} | {run['final_train_loss']:.4f} | "
                     f"{h['sotu_2000_2021']:.4f} / {h['moby_dick']:.4f} / {h['both']:.4f} |")
    lines += ["", "Losses are mean negative log-likelihood per predicted token (nats), F16-rounded weights in float32; "
              "train loss over 256 fixed, evenly spaced 128-token training windows.", "",
              "## Extrapolation (held-out perplexity, both corpora pooled)", "", table["definition"], "",
              "| model | " + " | ".join(f"{L} ({L // table['train_seq_len']}x)" for L in table["lengths"]) + " |",
              "|---|" + "---|" * len(table["lengths"])]
    for position, res in table["results"].items():
        for corpus in ("both", "sotu_2000_2021", "moby_dick"):
            lines.append(f"| {position} ({corpus}) | " + " | ".join(f"{res[corpus][L]['ppl']:.2f}" for L in table["lengths"]) + " |")
    if record["samples"]:
        s = record["samples"]
        lines += ["", f"## Samples (prompt `{s['prompt']}`)", "", "Greedy:", "", "```", s["greedy"], "```", "",
                  f"Sampled ({s['sampling']}):", ""]
        for text in s["sampled"]:
            lines += ["```", text, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    main()
