"""BLOOM (BloomForCausalLM) in plain PyTorch, plus a sinusoidal-position twin used only for comparison.

The ALiBi model computes exactly what Hugging Face's BloomForCausalLM computes for the same weights:

    word_embeddings -> word_embeddings_layernorm
    per layer:  x = x + dense(attention(query_key_value(input_layernorm(x))))
                x = x + dense_4h_to_h(gelu_tanh(dense_h_to_4h(post_attention_layernorm(x))))
    ln_f -> logits = x @ word_embeddings^T (tied)

with biases on every linear and layernorm and no position embedding.  The fused query_key_value rows are
interleaved per head: [head][q, k, v][head_dim].  Attention adds -m_h * (i - j) to the score of query i against
key j (causal).  Hugging Face adds +m_h * j instead; the two differ by a per-row constant, which softmax removes.

The sinusoidal twin (position="sinusoidal") is the same network with no ALiBi bias and fixed Vaswani et al.
sinusoidal position embeddings added right after word_embeddings_layernorm (where both terms are at unit scale).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def alibi_slopes(n_head, max_bias=8.0):
    """BLOOM's slopes (DESIGN.md section 1): a geometric sequence, with odd powers filling non-power-of-two counts."""
    p = 2 ** math.floor(math.log2(n_head))
    slopes = [2.0 ** (-max_bias * (h + 1) / p) for h in range(p)]
    slopes += [2.0 ** (-max_bias * (2 * k + 1) / (2 * p)) for k in range(n_head - p)]
    return slopes


def sinusoidal_positions(length, dim):
    """Fixed sin/cos position table (Vaswani et al.), shape [length, dim]."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    inv = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv)
    return table


def gelu_tanh(x):
    """BLOOM's GELU (tanh approximation), written out as in transformers' bloom_gelu_forward."""
    return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1.0 + 0.044715 * x * x)))


class Attention(nn.Module):
    def __init__(self, hidden, n_head):
        super().__init__()
        self.n_head = n_head
        self.head_dim = hidden // n_head
        self.query_key_value = nn.Linear(hidden, 3 * hidden)
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x, bias):
        b, t, _ = x.shape
        qkv = self.query_key_value(x).view(b, t, self.n_head, 3, self.head_dim)
        q, k, v = (qkv[:, :, :, i].transpose(1, 2) for i in range(3))  # each [b, head, t, head_dim]
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        probs = torch.softmax(scores.to(bias.dtype) + bias, dim=-1).to(v.dtype)  # softmax in fp32 (or fp64)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, -1)
        return self.dense(ctx)


class Block(nn.Module):
    def __init__(self, hidden, n_head, eps):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.self_attention = Attention(hidden, n_head)
        self.post_attention_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.mlp = nn.Module()
        self.mlp.dense_h_to_4h = nn.Linear(hidden, 4 * hidden)
        self.mlp.dense_4h_to_h = nn.Linear(4 * hidden, hidden)

    def forward(self, x, bias):
        x = x + self.self_attention(self.input_layernorm(x), bias)
        h = self.post_attention_layernorm(x)
        return x + self.mlp.dense_4h_to_h(gelu_tanh(self.mlp.dense_h_to_4h(h)))


class BloomLM(nn.Module):
    """Parameter names match BLOOM checkpoints without the `transformer.` prefix."""

    def __init__(self, vocab_size, hidden, n_head, n_layer, eps=1e-5, position="alibi"):
        super().__init__()
        assert hidden % n_head == 0 and position in ("alibi", "sinusoidal")
        self.n_head = n_head
        self.position = position
        self.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.word_embeddings_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.h = nn.ModuleList(Block(hidden, n_head, eps) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(hidden, eps=eps)
        self.slopes = alibi_slopes(n_head)

    def attention_bias(self, t, dtype):
        """[head, t, t] additive score bias: ALiBi -m_h*(i-j) or 0, and -inf above the diagonal (causal)."""
        i = torch.arange(t, dtype=torch.float64)
        dist = i[:, None] - i[None, :]
        causal = torch.where(dist < 0, float("-inf"), 0.0)
        if self.position == "alibi":
            slopes = torch.tensor(self.slopes, dtype=torch.float64)[:, None, None]
            bias = -slopes * dist.clamp(min=0) + causal
        else:
            bias = causal.expand(self.n_head, t, t)
        return bias.to(dtype)

    def forward(self, ids):
        """Logits [batch, t, vocab] for token ids [batch, t]."""
        t = ids.shape[1]
        x = self.word_embeddings_layernorm(self.word_embeddings(ids))
        if self.position == "sinusoidal":
            x = x + sinusoidal_positions(t, x.shape[-1]).to(x.dtype)
        bias = self.attention_bias(t, self.word_embeddings.weight.dtype)
        for block in self.h:
            x = block(x, bias)
        return F.linear(self.ln_f(x), self.word_embeddings.weight)
