// Acceptance test of the OpenAI-compatible HTTP API with the official
// `openai` SDK for Node, against the real alibi-server on the tiny-mpt
// fixture (which has MPT-7B-chat's ChatML template): unary and streamed
// completions (the stream concatenates to the unary text for the same
// seed), several prompts in one call, n = 3, logprobs, echo, stop,
// logit_bias, a chat completion (unary and streamed), /v1/models and the
// SDK's error classes. Every completion is compared with the gRPC API's
// answer to the same parameters (@grpc/grpc-js on proto/alibi/v1).
//
//   openai_sdk_test.mjs --server=PATH   (npm install first)
import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

async function need(specifier) {
  try {
    return await import(specifier);
  } catch (e) {
    if (e.code === "ERR_MODULE_NOT_FOUND") {
      console.error(`missing npm package ${specifier}: run \`npm install\` in ${ROOT}`);
      process.exit(1);
    }
    throw e;
  }
}
const { default: OpenAI } = await need("openai");
const grpc = await need("@grpc/grpc-js");
const protoLoader = await need("@grpc/proto-loader");

const serverArg = process.argv.find((a) => a.startsWith("--server="));
assert(serverArg, "usage: openai_sdk_test.mjs --server=PATH");
const serverPath = path.resolve(serverArg.slice("--server=".length));
const MODEL = "tiny-mpt";

// ---------------------------------------------------------------------------
// Harness: named async checks, "ok"/"not ok" lines, a closing count.
let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    const detail = await fn();
    passed++;
    console.log(`ok - ${name}${detail ? ` (${detail})` : ""}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n    ${String(e.stack ?? e).split("\n").join("\n    ")}`);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// The server, on free ports.
const work = fs.mkdtempSync(path.join(os.tmpdir(), "alibi-openai-sdk-"));
const portFile = path.join(work, "ports.json");
const logFile = path.join(work, "server.log");
const log = fs.openSync(logFile, "w");
const proc = spawn(serverPath, [
  `--model=${path.join(ROOT, "tests/data/models", MODEL)}`,
  "--host=127.0.0.1", "--port=0", "--metrics_host=127.0.0.1", "--metrics_port=0",
  "--http_host=127.0.0.1", "--http_port=0", "--num_threads=2", "--kv_blocks=512",
  `--port_file=${portFile}`,
], { stdio: ["ignore", log, log] });
let exited = null;
proc.on("exit", (code, signal) => (exited = { code, signal }));
const showLog = () => fs.readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n");

async function waitReady() {
  let ports = null;
  for (let i = 0; i < 600 && !ports && !exited; i++) {
    try {
      ports = JSON.parse(fs.readFileSync(portFile, "utf8"));
    } catch {
      await sleep(100);
    }
  }
  assert(ports, `the server wrote no port file: ${JSON.stringify(exited)}\n${showLog()}`);
  for (let i = 0; i < 600 && !exited; i++) {
    const ok = await fetch(`http://127.0.0.1:${ports.http_port}/health`).then((r) => r.ok, () => false);
    if (ok) return ports;
    await sleep(100);
  }
  throw new Error(`the server never became healthy:\n${showLog()}`);
}

// ---------------------------------------------------------------------------
// The gRPC API, for comparison.
function grpcClient(port) {
  const definition = protoLoader.loadSync(path.join(ROOT, "proto/alibi/v1/inference.proto"), {
    keepCase: true, longs: String, enums: String, defaults: true,
    includeDirs: [path.join(ROOT, "proto")],
  });
  const { InferenceService } = grpc.loadPackageDefinition(definition).alibi.v1;
  const client = new InferenceService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (method, request) => new Promise((resolve, reject) =>
    client[method](request, { deadline: Date.now() + 60000 }, (e, r) => (e ? reject(e) : resolve(r))));
  return { complete: (params) => call("Complete", { params }), close: () => client.close() };
}

// An OpenAI completions request's parameters as gRPC CompletionParams.
function toGrpc(p) {
  const sampling = {};
  if (p.temperature !== undefined) sampling.temperature = p.temperature;
  if (p.seed !== undefined) sampling.seed = String(p.seed);
  if (p.stop !== undefined) sampling.stop = [].concat(p.stop);
  if (p.ignore_eos !== undefined) sampling.ignore_eos = p.ignore_eos;
  if (p.logit_bias !== undefined) sampling.logit_bias = p.logit_bias;
  const out = { text: p.prompt, sampling, max_tokens: p.max_tokens, echo: p.echo ?? false, n: p.n ?? 1 };
  if (p.logprobs !== undefined) out.logprobs = p.logprobs;
  return out;
}

// gRPC's completion texts, by index.
const grpcTexts = (r) => (r.completions.length ? r.completions.map((c) => c.text) : [r.text]);

async function main() {
  const ports = await waitReady();
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${ports.http_port}/v1`, apiKey: "unused", maxRetries: 0 });
  const g = grpcClient(ports.port);

  await check("/v1/models lists the served model", async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
    assert.equal(models.data[0].object, "model");
    const one = await client.models.retrieve(MODEL);
    assert.equal(one.id, MODEL);
    return `${MODEL}, max_model_len ${models.data[0].max_model_len}`;
  });

  const base = { model: MODEL, prompt: "The quick brown fox", max_tokens: 24, temperature: 0.8, seed: 7, ignore_eos: true };
  await check("unary and streamed completions agree for the same seed, and match gRPC", async () => {
    const unary = await client.completions.create(base);
    assert.equal(unary.object, "text_completion");
    assert.equal(unary.choices.length, 1);
    assert.equal(unary.choices[0].finish_reason, "length");
    assert.equal(unary.usage.completion_tokens, 24);
    const stream = await client.completions.create({ ...base, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish = null;
    let usage = null;
    let events = 0;
    for await (const chunk of stream) {
      events++;
      for (const c of chunk.choices) {
        text += c.text;
        finish = c.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert(events > 2, `only ${events} events`);
    assert.equal(text, unary.choices[0].text);
    assert.equal(finish, "length");
    assert.equal(usage?.completion_tokens, 24);
    const r = await g.complete(toGrpc(base));
    assert.equal(unary.choices[0].text, r.text);
    assert.equal(unary.usage.prompt_tokens, r.usage.prompt_tokens);
    return `${events} events`;
  });

  await check("several prompts in one call: one choice each, as if sent alone", async () => {
    const prompts = ["In the beginning", "Call me Ishmael", "It was the best of times"];
    const all = await client.completions.create({ model: MODEL, prompt: prompts, max_tokens: 8, temperature: 0 });
    assert.deepEqual(all.choices.map((c) => c.index), [0, 1, 2]);
    for (let i = 0; i < prompts.length; i++) {
      const alone = await client.completions.create({ model: MODEL, prompt: prompts[i], max_tokens: 8, temperature: 0 });
      assert.equal(all.choices[i].text, alone.choices[0].text, `prompt ${i}`);
      const r = await g.complete(toGrpc({ prompt: prompts[i], max_tokens: 8, temperature: 0 }));
      assert.equal(all.choices[i].text, r.text, `prompt ${i} vs gRPC`);
    }
    assert.equal(all.usage.completion_tokens, 24);
  });

  await check("n = 3: three seeded completions, the same as gRPC's n = 3", async () => {
    const p = { model: MODEL, prompt: "Once upon a time", max_tokens: 10, temperature: 1.0, seed: 11, n: 3, ignore_eos: true };
    const r = await client.completions.create(p);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    assert.equal(new Set(r.choices.map((c) => c.text)).size, 3, "three different completions");
    assert.equal(r.usage.completion_tokens, 30);
    assert.deepEqual(r.choices.map((c) => c.text), grpcTexts(await g.complete(toGrpc(p))));
    // Streamed, the choices interleave and each ends once.
    const texts = ["", "", ""];
    const finishes = [0, 0, 0];
    for await (const chunk of await client.completions.create({ ...p, stream: true })) {
      for (const c of chunk.choices) {
        texts[c.index] += c.text;
        if (c.finish_reason) finishes[c.index]++;
      }
    }
    assert.deepEqual(texts, r.choices.map((c) => c.text));
    assert.deepEqual(finishes, [1, 1, 1]);
  });

  await check("logprobs: OpenAI's legacy shape, the values gRPC reports", async () => {
    const p = { model: MODEL, prompt: "Hello world, this is", max_tokens: 6, temperature: 0, logprobs: 2 };
    const r = await client.completions.create(p);
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.length, 6);
    assert.equal(lp.tokens.join(""), r.choices[0].text);
    assert.equal(lp.text_offset[0], 0);
    for (let i = 1; i < 6; i++) assert.equal(lp.text_offset[i], lp.text_offset[i - 1] + [...lp.tokens[i - 1]].length);
    const g6 = await g.complete(toGrpc(p));
    for (let i = 0; i < 6; i++) {
      assert(Math.abs(lp.token_logprobs[i] - g6.logprobs[i].logprob) < 1e-6, `token ${i}`);
      const top = lp.top_logprobs[i];
      assert(Object.keys(top).length >= 1 && Object.keys(top).length <= 3, JSON.stringify(top));
      // Greedy: the chosen token is the most likely one.
      assert.equal(Math.max(...Object.values(top)), lp.token_logprobs[i]);
    }
  });

  await check("echo: the prompt first, with its log-probabilities", async () => {
    const prompt = "Call me Ishmael. Some years ago";
    const p = { model: MODEL, prompt, max_tokens: 4, temperature: 0, echo: true, logprobs: 1 };
    const r = await client.completions.create(p);
    const c = r.choices[0];
    assert(c.text.startsWith(prompt), c.text);
    assert.equal(c.logprobs.tokens.length, r.usage.prompt_tokens + 4);
    assert.equal(c.logprobs.token_logprobs[0], null);
    assert.equal(typeof c.logprobs.token_logprobs[1], "number");
    const gr = await g.complete(toGrpc(p));
    assert.equal(c.text, gr.text);
    for (let i = 0; i < gr.prompt_logprobs.length; i++) {
      assert(Math.abs(c.logprobs.token_logprobs[i + 1] - gr.prompt_logprobs[i].logprob) < 1e-6, `prompt token ${i + 1}`);
    }
  });

  await check("stop: the text ends before the stop string, finish_reason stop", async () => {
    const p = { model: MODEL, prompt: "Once upon a time", max_tokens: 30, temperature: 0, ignore_eos: true };
    const free = (await client.completions.create(p)).choices[0].text;
    assert(free.length > 20, free);
    const stop = free.slice(10, 13);
    const r = await client.completions.create({ ...p, stop: [stop] });
    assert.equal(r.choices[0].text, free.slice(0, free.indexOf(stop)));
    assert.equal(r.choices[0].finish_reason, "stop");
    assert.equal(r.choices[0].text, (await g.complete(toGrpc({ ...p, stop: [stop] }))).text);
  });

  await check("logit_bias: +100 on one token makes greedy decoding pick it every time", async () => {
    const token = 321;
    const p = { model: MODEL, prompt: "In the beginning", max_tokens: 5, temperature: 0, logit_bias: { [token]: 100 }, logprobs: 0 };
    const r = await client.completions.create(p);
    const gr = await g.complete(toGrpc(p));
    assert.deepEqual(gr.token_ids, [token, token, token, token, token]);
    assert.equal(r.choices[0].text, gr.text);
    assert.equal(new Set(r.choices[0].logprobs.tokens).size, 1);
  });

  await check("chat completion with the model's ChatML template, unary and streamed, matching gRPC on the rendered prompt", async () => {
    const p = { model: MODEL, messages: [{ role: "user", content: "Hello!" }], max_tokens: 12, temperature: 0.7, seed: 5 };
    const r = await client.chat.completions.create(p);
    assert.equal(r.object, "chat.completion");
    const m = r.choices[0].message;
    assert.equal(m.role, "assistant");
    assert.equal(typeof m.content, "string");
    let text = "";
    let role = null;
    for await (const chunk of await client.chat.completions.create({ ...p, stream: true })) {
      for (const c of chunk.choices) {
        role = c.delta.role ?? role;
        text += c.delta.content ?? "";
      }
    }
    assert.equal(role, "assistant");
    assert.equal(text, m.content);
    // The ChatML rendering of tiny-mpt's tokenizer_config.json (MPT-7B-chat's
    // template, with its default system message).
    const rendered =
      "<|im_start|>system\nA conversation between a user and an LLM-based AI assistant. " +
      "The assistant gives helpful and honest answers.\n<|im_start|>user\nHello!<|im_end|>\n" +
      "<|im_start|>assistant\n";
    const gr = await g.complete({ text: rendered, max_tokens: 12, sampling: { temperature: 0.7, seed: "5" } });
    assert.equal(m.content, gr.text);
    assert.equal(r.usage.prompt_tokens, gr.usage.prompt_tokens);
    return `${r.usage.prompt_tokens} prompt tokens`;
  });

  await check("errors are the SDK's error classes with OpenAI's fields", async () => {
    await assert.rejects(client.completions.create({ model: MODEL, prompt: "x", temperature: -1 }), (e) => {
      assert(e instanceof OpenAI.BadRequestError, e.constructor.name);
      assert.equal(e.status, 400);
      assert.equal(e.param, "temperature");
      assert.equal(e.type, "invalid_request_error");
      return true;
    });
    await assert.rejects(client.completions.create({ model: "gpt-4", prompt: "x" }), (e) => {
      assert(e instanceof OpenAI.NotFoundError, e.constructor.name);
      assert.equal(e.code, "model_not_found");
      return true;
    });
    const bad = new OpenAI({ baseURL: `http://127.0.0.1:${ports.http_port}/v1`, apiKey: "x", maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: 5 }] }),
      (e) => e instanceof OpenAI.BadRequestError && e.param === "messages[0].content");
  });
  g.close();
}

try {
  await main();
} catch (e) {
  failed++;
  console.log(`not ok - ${e.stack ?? e}`);
} finally {
  if (!exited) proc.kill("SIGKILL");
  fs.closeSync(log);
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
