#!/usr/bin/env python3
"""Hugging Face transformers generate() on alibi-mkmodel checkpoints: the
peer figures next to alibi-gpubench's (scripts/gpu-check.sh runs both on the
same checkpoints, on the same GPU, in one run).

For each checkpoint and batch size: greedy generate() (bf16, KV cache) after
a random --prompt_len-token prompt; the prefill figure is generate() of one
new token, the decode figure (t(N new tokens) - t(1)) / (N - 1) per step;
medians of --reps runs after a warm-up. One JSON line per figure, then a
table. Needs PyTorch with a CUDA device and transformers (present on the GPU
machine; not installable here).

  python3 bench/gpu/hf_generate.py --model_dir /tmp/bloom-560m,/tmp/bloom-7b1
"""
import argparse
import json
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True,
                        help="comma-separated checkpoint directories")
    parser.add_argument("--batch", default="1,32", help="batch sizes")
    parser.add_argument("--prompt_len", type=int, default=512)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if not torch.cuda.is_available():
        sys.exit("hf_generate: PyTorch sees no CUDA device")
    print(f"# torch {torch.__version__}, transformers "
          f"{transformers.__version__}, {torch.cuda.get_device_name(0)}",
          flush=True)

    def timed(fn):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start

    rows = []
    failures = 0
    for model_dir in [d for d in args.model_dir.split(",") if d]:
        try:
            start = time.perf_counter()
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.bfloat16).to("cuda").eval()
            load_s = time.perf_counter() - start
            vocab = model.config.vocab_size
            for batch in [int(b) for b in args.batch.split(",") if b]:
                gen = torch.Generator().manual_seed(batch)
                ids = torch.randint(0, vocab, (batch, args.prompt_len),
                                    generator=gen).to("cuda")
                mask = torch.ones_like(ids)

                def generate(n):
                    with torch.inference_mode():
                        model.generate(input_ids=ids, attention_mask=mask,
                                       max_new_tokens=n, min_new_tokens=n,
                                       do_sample=False, use_cache=True,
                                       pad_token_id=0)

                generate(2)  # warm-up
                one = statistics.median(
                    timed(lambda: generate(1)) for _ in range(args.reps))
                many = statistics.median(
                    timed(lambda: generate(args.new_tokens))
                    for _ in range(args.reps))
                step = (many - one) / (args.new_tokens - 1)
                row = {
                    "model": model_dir, "batch": batch,
                    "prompt_len": args.prompt_len,
                    "new_tokens": args.new_tokens,
                    "load_s": round(load_s, 2),
                    "prefill_ms": round(one * 1e3, 3),
                    "decode_step_ms": round(step * 1e3, 3),
                    "decode_tok_per_s": round(batch / step, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            del model
            torch.cuda.empty_cache()
        except Exception as e:  # report and go on with the next checkpoint
            failures += 1
            print(f"hf_generate: {model_dir}: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
    print(f"\n{'model':40} {'batch':>5} {'prefill ms':>11} "
          f"{'decode ms/step':>15} {'decode tok/s':>13}")
    for r in rows:
        print(f"{r['model'][-40:]:40} {r['batch']:5d} {r['prefill_ms']:11.2f} "
              f"{r['decode_step_ms']:15.3f} {r['decode_tok_per_s']:13.1f}")
    return 1 if failures or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
