#!/usr/bin/python3
"""alibi-serve against llama.cpp's llama-server, side by side, same workload.

Starts both servers on the same checkpoint (alibi-serve on the Hugging Face
directory, llama-server on its GGUF conversion; see
../shared/tools/llamacpp-peer/README.md), both with the same thread count,
then runs each workload on one server at a time, alternating which goes first,
and reports medians and ratios. Every request sends the same prompt token ids
to both (greedy, EOS ignored), so both do the same work. Before anything is
timed, both continue 4 prompts greedily and the script prints how many leading
token ids agree (the conversion check; --require_same makes a difference
fatal). The machine may be shared: each timed run waits until other processes
are idle, and a run during which they used 0.1 cores or more (--quiet_cores)
is repeated. --busy_cores N starts N processes that spin on a core each for
every timed run (a neighbour taking cores; their CPU is not counted as
others'), for how both servers share a machine.

Workloads:
  decode      one stream: 128-token prompt, 128 tokens out; decode tokens/s
              (after the first token) and time to first token
  prefill     one stream: 512-token prompts, 1 token out; prompt tokens/s
              (512 / request time)
  streams8    8 concurrent streams, 32 requests of 128 in / 64 out;
              aggregate output tokens/s
  streams32   32 concurrent streams, 64 requests of 128 in / 64 out

llama-server gets -np 1 for decode/prefill and -np N for N streams, with
enough context per slot for the workload's prompt and output (at least 512
tokens; llama-server silently drops half of a prompt that fills its slot, so
every llama.cpp completion is checked to have evaluated the whole prompt) and
its KV cache in the --kv dtype (f32 default, like alibi-serve's).

Needs only the standard library and python3-grpcio/python3-protobuf (the
messages are generated with protoc at start, as client/examples/python does).

  /usr/bin/python3 bench/cpu_peer/peer_bench.py \\
      --alibi_server build/server/alibi-server --model /tmp/bloom-354m \\
      --cpu_weight_dtype f32 \\
      --llama_server /tmp/llamacpp/build/bin/llama-server \\
      --gguf /tmp/bloom-354m-f32.gguf --repeats 2
"""

import argparse
import concurrent.futures
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "client", "examples", "python"))
import alibi_client  # noqa: E402  (load_protos)
import grpc  # noqa: E402

WORKLOADS = {
    # name: (streams, requests, prompt tokens, output tokens)
    "decode": (1, 1, 128, 128),
    "prefill": (1, 3, 512, 1),
    "streams8": (8, 32, 128, 64),
    "streams32": (32, 64, 128, 64),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompts(count, length, vocab, seed):
    rng = random.Random(seed)
    return [[rng.randrange(100, vocab - 1) for _ in range(length)]
            for _ in range(count)]


class CpuMeter:
    """CPU time spent on this machine by processes other than this script
    and the two servers, in cores: the machine is shared, and a run that
    others disturbed is repeated (see timed())."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, pids):
        self.pids = pids

    def _sample(self):
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal
        busy = sum(fields[0:3]) + sum(fields[5:8])
        ours = 0
        for pid in self.pids:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    stat = f.read().rsplit(")", 1)[1].split()
                ours += int(stat[11]) + int(stat[12])  # utime, stime
            except OSError:
                pass
        t = os.times()
        ours += (t.user + t.system) * self.TICK
        return time.perf_counter(), busy, ours

    def start(self):
        self.begin = self._sample()

    def foreign_cores(self):
        now = self._sample()
        wall = now[0] - self.begin[0]
        return max(0.0, ((now[1] - self.begin[1]) - (now[2] - self.begin[2]))
                   / self.TICK / max(wall, 1e-9))

    def wait_quiet(self, limit, timeout=900):
        """Waits until others use less than `limit` cores over 2 s."""
        deadline = time.time() + timeout
        while True:
            self.start()
            time.sleep(2)
            load = self.foreign_cores()
            if load < limit or time.time() > deadline:
                return load
            print("# waiting: others use %.2f cores" % load, flush=True)


class Alibi:
    name = "alibi-serve"

    def __init__(self, args, threads):
        self.port = free_port()
        cmd = [args.alibi_server, "--model", args.model, "--port",
               str(self.port), "--host", "127.0.0.1", "--metrics_port", "-1",
               "--num_threads", str(threads), "--cpu_weight_dtype",
               args.cpu_weight_dtype, "--kv_cache_dtype", args.kv,
               "--enable_prefix_caching=false"]
        self.command = " ".join(cmd)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(args.log_prefix + "alibi.log",
                                                 "a"))
        self.pb, _ = alibi_client.load_protos(REPO)
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        base = "/alibi.v1.InferenceService/"
        self.stream_call = self.channel.unary_stream(
            base + "CompleteStream",
            request_serializer=self.pb.CompleteStreamRequest.SerializeToString,
            response_deserializer=self.pb.CompleteStreamResponse.FromString)
        info_call = self.channel.unary_unary(
            base + "GetModelInfo",
            request_serializer=self.pb.GetModelInfoRequest.SerializeToString,
            response_deserializer=self.pb.GetModelInfoResponse.FromString)
        deadline = time.time() + 300
        while True:
            try:
                self.info = info_call(self.pb.GetModelInfoRequest(), timeout=5)
                break
            except grpc.RpcError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("alibi-server did not start")
                time.sleep(0.5)

    def describe(self):
        return "%s (dtype %s)" % (self.info.device, self.info.dtype)

    def greedy_ids(self, prompt, max_tokens):
        return self.generate(prompt, max_tokens)[3]

    def generate(self, prompt, max_tokens):
        """Streams a greedy completion; returns (seconds to the first token,
        seconds to the last, tokens, token ids)."""
        params = self.pb.CompletionParams(token_ids=prompt,
                                          max_tokens=max_tokens)
        params.sampling.temperature = 0.0
        params.sampling.ignore_eos = True
        start = time.perf_counter()
        first, last, ids = None, None, []
        for message in self.stream_call(
                self.pb.CompleteStreamRequest(params=params), timeout=3600):
            if message.token_ids:
                last = time.perf_counter() - start
                first = last if first is None else first
                ids.extend(message.token_ids)
        return first, last, len(ids), ids

    def close(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class Llama:
    name = "llama.cpp"

    def __init__(self, args, threads, slots, tokens_per_slot):
        self.port = free_port()
        # A slot must hold prompt + output with room to spare: llama-server
        # truncates a prompt of n_ctx tokens or more to its second half.
        per_slot = max(512, 256 * (tokens_per_slot // 256 + 1))
        cmd = [args.llama_server, "-m", args.gguf, "-t", str(threads), "-tb",
               str(threads), "-np", str(slots), "-c", str(per_slot * slots),
               "-ctk", args.kv, "-ctv", args.kv, "--host", "127.0.0.1",
               "--port", str(self.port)]
        self.command = " ".join(cmd)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(args.log_prefix + "llama.log",
                                                 "a"))
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(
                        "http://127.0.0.1:%d/health" % self.port,
                        timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("llama-server did not start")
            time.sleep(0.5)

    def describe(self):
        return "llama-server " + os.path.basename(self.command.split()[2])

    def post(self, body):
        return urllib.request.urlopen(urllib.request.Request(
            "http://127.0.0.1:%d/completion" % self.port,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}), timeout=3600)

    def generate(self, prompt, max_tokens):
        """As Alibi.generate; the ids come from a second, unstreamed request
        only when asked for (streamed events carry one token each but may
        hold back one that ends inside a UTF-8 character)."""
        start = time.perf_counter()
        first, last, count = None, None, 0
        with self.post({"prompt": prompt, "n_predict": max_tokens,
                        "temperature": 0, "ignore_eos": True,
                        "cache_prompt": False, "stream": True}) as response:
            for line in response:
                line = line.strip()
                if not line.startswith(b"data: "):
                    continue
                event = json.loads(line[6:])
                now = time.perf_counter() - start
                if event.get("stop"):
                    count = event.get("tokens_predicted", count)
                    last = now if last is None else last
                    if (event.get("truncated") or
                            event.get("tokens_evaluated") != len(prompt)):
                        raise RuntimeError(
                            "llama-server evaluated %s of %d prompt tokens "
                            "(truncated: %s)" % (
                                event.get("tokens_evaluated"), len(prompt),
                                event.get("truncated")))
                    break
                if event.get("tokens"):
                    last = now
                    first = now if first is None else first
        return first, last, count, None

    def greedy_ids(self, prompt, max_tokens):
        with self.post({"prompt": prompt, "n_predict": max_tokens,
                        "temperature": 0, "ignore_eos": True,
                        "cache_prompt": False,
                        "return_tokens": True}) as response:
            return json.loads(response.read())["tokens"]

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run(server, workload, vocab, seed):
    """One run of `workload` on `server`: a dict of figures."""
    streams, count, prompt_len, out_len = WORKLOADS[workload]
    batch = prompts(count, prompt_len, vocab, seed)
    results = [None] * count
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=streams) as pool:
        futures = {pool.submit(server.generate, p, out_len): i
                   for i, p in enumerate(batch)}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
    wall = time.perf_counter() - start
    if any(r[2] != out_len for r in results):
        raise RuntimeError("%s returned %s tokens, wanted %d each" % (
            server.name, [r[2] for r in results], out_len))
    out = {"wall_s": wall}
    if workload == "decode":
        first, last, n, _ = results[0]
        out["ttft_ms"] = 1e3 * first
        out["decode_tok_s"] = (n - 1) / (last - first)
    elif workload == "prefill":
        out["prefill_tok_s"] = statistics.median(
            prompt_len / r[1] for r in results)
    else:
        out["output_tok_s"] = sum(r[2] for r in results) / wall
        out["ttft_ms_median"] = 1e3 * statistics.median(
            r[0] for r in results)
    return out


def check_conversion(servers, vocab, length, count=4):
    """Greedy continuations of `count` prompts on every server: for each
    prompt, how many leading tokens all servers agree on, and their ids."""
    agree, ids = [], []
    for prompt in prompts(count, 16, vocab, seed=1234):
        out = [list(s.greedy_ids(prompt, length)) for s in servers]
        same = 0
        while same < length and all(o[same] == out[0][same] for o in out):
            same += 1
        agree.append(same)
        ids.append(out)
    return agree, ids


def machine():
    model = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = [l.split(":", 1)[1].strip() for l in model.splitlines()
             if l.startswith("Model name")]
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    return "%s, %d cores; %s UTC; alibi-serve %s" % (
        model[0] if model else "?", os.cpu_count(),
        time.strftime("%Y-%m-%d %H:%M", time.gmtime()), head)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alibi_server", required=True)
    parser.add_argument("--model", required=True, help="HF checkpoint dir")
    parser.add_argument("--cpu_weight_dtype", default="auto")
    parser.add_argument("--llama_server", required=True)
    parser.add_argument("--llama_commit", default="c392e50")
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--kv", default="f32", help="KV dtype of both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", default="decode,prefill,streams8,"
                        "streams32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=50432)
    parser.add_argument("--check_tokens", type=int, default=16,
                        help="greedy tokens compared (conversion check)")
    parser.add_argument("--require_same", action="store_true",
                        help="stop when the greedy continuations differ")
    parser.add_argument("--check_only", action="store_true")
    parser.add_argument("--quiet_cores", type=float, default=0.1,
                        help="a run during which other processes used this "
                        "many cores or more is repeated")
    parser.add_argument("--busy_cores", type=int, default=0,
                        help="processes that spin on a core each while a "
                        "run is timed (a neighbour taking cores); not "
                        "counted as others")
    parser.add_argument("--max_attempts", type=int, default=4)
    parser.add_argument("--log_prefix", default="/tmp/peer_bench_")
    parser.add_argument("--json", default="", help="append results here")
    args = parser.parse_args()
    print("# %s; llama.cpp %s; %d threads each, KV %s%s" % (
        machine(), args.llama_commit, args.threads, args.kv,
        "; %d processes spinning on a core each during every timed run" %
        args.busy_cores if args.busy_cores else ""), flush=True)

    summary = []
    for index, workload in enumerate(args.workloads.split(",")):
        streams, _, prompt_len, out_len = WORKLOADS[workload]
        servers = [Alibi(args, args.threads),
                   Llama(args, args.threads, streams, prompt_len + out_len)]
        try:
            for s in servers:
                print("# %s: %s\n#   %s" % (s.name, s.describe(), s.command),
                      flush=True)
            if index == 0:
                # The conversion check, before anything is timed: both servers
                # continue the same prompt ids the same way.
                agree, ids = check_conversion(servers, args.vocab,
                                              args.check_tokens)
                for prompt_ids in ids:
                    for s, i in zip(servers, prompt_ids):
                        print("# greedy ids %s: %s" % (s.name, i), flush=True)
                print("# conversion check: %s of %d greedy tokens agree "
                      "(4 prompts)" % (agree, args.check_tokens), flush=True)
                if args.require_same and min(agree) < args.check_tokens:
                    raise SystemExit("conversion check failed")
                if args.check_only:
                    return
            # Warm-up (page in the weights, first allocations), not counted:
            # one request of the workload's prompt length.
            for s in servers:
                s.generate(prompts(1, prompt_len, args.vocab, 999)[0], 8)
            server_pids = [s.proc.pid for s in servers]
            meter = CpuMeter(server_pids)
            figures = {s.name: [] for s in servers}
            for rep in range(args.repeats):
                order = servers if rep % 2 == 0 else servers[::-1]
                for s in order:
                    for attempt in range(args.max_attempts):
                        meter.wait_quiet(args.quiet_cores)
                        busy = [subprocess.Popen(
                            [sys.executable, "-c", "while True: pass"])
                                for _ in range(args.busy_cores)]
                        meter.pids = server_pids + [b.pid for b in busy]
                        meter.start()
                        try:
                            result = run(s, workload, args.vocab, seed=rep)
                            result["others_cores"] = meter.foreign_cores()
                        finally:
                            for b in busy:
                                b.kill()
                                b.wait()
                            meter.pids = server_pids
                        if result["others_cores"] < args.quiet_cores:
                            break
                        print("# disturbed (others used %.2f cores): %s" % (
                            result["others_cores"], json.dumps(result)),
                              flush=True)
                    figures[s.name].append(result)
                    print("%s rep %d %s: %s" % (workload, rep, s.name,
                                                json.dumps(result)),
                          flush=True)
            row = {"workload": workload, "weights": args.cpu_weight_dtype,
                   "gguf": os.path.basename(args.gguf)}
            for name, runs in figures.items():
                for key in runs[0]:
                    row["%s %s" % (name, key)] = statistics.median(
                        r[key] for r in runs)
            summary.append(row)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
        finally:
            for s in servers:
                s.close()

    print("\n| workload | figure | alibi-serve %s | llama.cpp %s | ratio |" % (
        args.cpu_weight_dtype, os.path.basename(args.gguf)))
    print("|---|---|---|---|---|")
    for row in summary:
        for key in [k for k in row if k.startswith("alibi-serve ")]:
            figure = key[len("alibi-serve "):]
            if figure in ("wall_s", "others_cores"):
                continue
            a, l = row[key], row["llama.cpp " + figure]
            # Higher is better for rates, lower for times.
            ratio = a / l if figure.endswith("tok_s") else l / a
            print("| %s | %s | %.1f | %.1f | %.2fx |" % (
                row["workload"], figure, a, l, ratio))


if __name__ == "__main__":
    main()
