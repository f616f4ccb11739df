#!/usr/bin/env python3
"""A Python inference worker that skips prefill with seqkv.

A small torch implementation of the Llama architecture (RMSNorm, RoPE with
config.json's theta in the HF `rotate_half` layout, grouped-query attention,
SwiGLU MLP) loads a Hugging Face model directory (config.json and
safetensors weights, read with seqkv's pure-numpy reader). For each prompt it
does what an engine's KV connector does (vLLM's get_num_matched_tokens, load
and save hooks):

  1. asks seqkv how long a prefix of the prompt is stored (Lookup),
  2. loads that prefix's K/V (Get) as its attention cache,
  3. prefills only the tokens after it,
  4. generates greedily, and
  5. stores the grown sequence (Put); seqkv keeps only the chunks it lacks.

Usage (token ids, or text when the directory has a byte-level BPE
tokenizer.json; the BOS is not added for you):

  PYTHONPATH=client/python:build/python python3 examples/python_worker.py \\
      --model_dir ../shared/data/lm --model kvlm-23m --tokens 0,464,9916 \\
      --max_new_tokens 16

Prints one JSON line per prompt: how many tokens were reused from seqkv and
how many were prefilled, the generated ids (and text), and what the Put
stored.
"""

import argparse
import json
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import seqkv
from seqkv import safetensors


# --------------------------------------------------------------------------
# The model.


def _to_torch(array):
    """A numpy array from seqkv.safetensors as a torch tensor; bf16 bits
    (uint16) become torch.bfloat16."""
    if array.dtype == np.uint16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def load_weights(model_dir):
    """Every tensor of a HF checkpoint (one file, or shards listed in
    model.safetensors.index.json). bf16 tensors must be marked as such in
    the file; the reader returns their bits."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        path = os.path.join(model_dir, name)
        tensors, _, kinds = safetensors.read(path)
        for key, array in tensors.items():
            if kinds[key] == "BF16":
                weights[key] = _to_torch(array)
            else:
                weights[key] = torch.from_numpy(array)
    return weights


class Llama:
    """A Llama-family decoder for one sequence at a time.

    compute "bf16" reproduces a bf16 inference engine: activations are
    bf16, matrix products accumulate in fp32 and round once, attention runs
    in fp32 over the bf16 cache (as flash/SDPA kernels do), cos and sin are
    computed in fp32 and rounded to bf16. "fp32" keeps activations in fp32.
    The KV cache is bf16 either way, [layers, kv_heads, tokens, head_dim]
    per tensor, K post-RoPE: the layout seqkv stores.
    """

    def __init__(self, model_dir, compute="bf16"):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = json.load(f)
        c = self.config
        if c.get("model_type", "llama") != "llama":
            print(f"warning: model_type {c.get('model_type')!r} is run as "
                  "Llama", file=sys.stderr)
        if c.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {c['hidden_act']!r}: only silu "
                             "(SwiGLU) is implemented")
        if (c.get("rope_scaling") or {}).get("rope_type", "default") != \
                "default" or (c.get("rope_parameters") or {}).get(
                    "rope_type", "default") != "default":
            raise ValueError("only default (unscaled) RoPE is implemented")
        self.layout = seqkv.Layout.from_hf_config(c)
        self.num_layers = self.layout.num_layers
        self.num_kv_heads = self.layout.num_kv_heads
        self.head_dim = self.layout.head_dim
        self.num_heads = int(c["num_attention_heads"])
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.theta = self.layout.rope.theta
        self.dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[compute]
        self.bos_token_id = c.get("bos_token_id")
        self.eos_token_id = c.get("eos_token_id")
        raw = load_weights(model_dir)

        def matrix(name):  # fp32 copies: products accumulate in fp32
            return raw[name].float()

        def vector(name):
            return raw[name].to(self.dtype)

        self.embed = raw["model.embed_tokens.weight"].to(self.dtype)
        self.layers = []
        for i in range(self.num_layers):
            p = f"model.layers.{i}."
            self.layers.append({
                "attn_norm": vector(p + "input_layernorm.weight"),
                "mlp_norm": vector(p + "post_attention_layernorm.weight"),
                "q": matrix(p + "self_attn.q_proj.weight"),
                "k": matrix(p + "self_attn.k_proj.weight"),
                "v": matrix(p + "self_attn.v_proj.weight"),
                "o": matrix(p + "self_attn.o_proj.weight"),
                "gate": matrix(p + "mlp.gate_proj.weight"),
                "up": matrix(p + "mlp.up_proj.weight"),
                "down": matrix(p + "mlp.down_proj.weight"),
                "biases": {name: raw[p + f"self_attn.{name}_proj.bias"].float()
                           for name in ("q", "k", "v")
                           if p + f"self_attn.{name}_proj.bias" in raw},
            })
        self.norm = vector("model.norm.weight")
        self.lm_head = (raw["lm_head.weight"] if "lm_head.weight" in raw else
                        raw["model.embed_tokens.weight"]).float()
        self.inv_freq = 1.0 / (self.theta ** (
            torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() /
            self.head_dim))

    def _linear(self, x, weight, bias=None):
        y = x.float() @ weight.T
        if bias is not None:
            y = y + bias
        return y.to(self.dtype)

    def _rms_norm(self, x, weight):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(self.dtype)

    def _rope(self, x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _attend(self, scores, values):
        """softmax(scores) @ values as fused attention kernels compute it:
        unnormalized probabilities (rounded to the compute dtype) times V,
        then divided by the fp32 row sum."""
        weights = (scores - scores.amax(-1, keepdim=True)).exp()
        total = weights.sum(-1, keepdim=True)
        weights = weights.to(self.dtype).float()
        return ((weights @ values) / total).to(self.dtype)

    def forward(self, tokens, past_k=None, past_v=None):
        """Runs `tokens` after a cache of past_k/past_v (bf16, [layers,
        kv_heads, P, head_dim], or None). Returns (logits [T, vocab] fp32,
        k, v [layers, kv_heads, P + T, head_dim] bf16)."""
        tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        count = tokens.shape[0]
        start = 0 if past_k is None else past_k.shape[2]
        positions = torch.arange(start, start + count, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(self.dtype), angles.sin().to(self.dtype)
        group = self.num_heads // self.num_kv_heads
        # Query i (position start + i) sees keys up to start + i.
        visible = (torch.arange(start + count)[None, :] <=
                   (start + torch.arange(count))[:, None])
        mask = torch.zeros(visible.shape).masked_fill(~visible, float("-inf"))
        scale = self.head_dim ** -0.5
        x = self.embed[tokens]
        ks, vs = [], []
        for i, w in enumerate(self.layers):
            h = self._rms_norm(x, w["attn_norm"])
            b = w["biases"]
            q = self._linear(h, w["q"], b.get("q")).view(
                count, self.num_heads, self.head_dim).transpose(0, 1)
            k = self._linear(h, w["k"], b.get("k")).view(
                count, self.num_kv_heads, self.head_dim).transpose(0, 1)
            v = self._linear(h, w["v"], b.get("v")).view(
                count, self.num_kv_heads, self.head_dim).transpose(0, 1)
            q = self._rope(q, cos, sin)
            k = self._rope(k, cos, sin).to(torch.bfloat16)
            v = v.to(torch.bfloat16)
            if past_k is not None:
                k = torch.cat((past_k[i], k), dim=1)
                v = torch.cat((past_v[i], v), dim=1)
            ks.append(k)
            vs.append(v)
            keys = k.float().repeat_interleave(group, dim=0)
            values = v.float().repeat_interleave(group, dim=0)
            scores = (q.float() @ keys.transpose(1, 2)) * scale + mask
            attended = self._attend(scores, values)
            attended = attended.transpose(0, 1).reshape(count, -1)
            x = x + self._linear(attended, w["o"])
            h = self._rms_norm(x, w["mlp_norm"])
            gated = F.silu(self._linear(h, w["gate"])) * self._linear(h, w["up"])
            x = x + self._linear(gated, w["down"])
        x = self._rms_norm(x, self.norm)
        logits = self._linear(x, self.lm_head).float()
        return logits, torch.stack(ks), torch.stack(vs)


# --------------------------------------------------------------------------
# Tokenizer: byte-level BPE from tokenizer.json, when there is one.


def _bytes_to_unicode():
    """GPT-2's byte -> printable character map of byte-level BPE."""
    keep = (list(range(ord("!"), ord("~") + 1)) +
            list(range(ord("¡"), ord("¬") + 1)) +
            list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return dict(zip(range(256), chars))


# GPT-2's pre-tokenizer; Python's re lacks \p{L}/\p{N}, so letters are
# [^\W\d_] and numbers \d (exact for ASCII; rare non-decimal numerals split
# differently).
_PRETOKENIZE = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class ByteLevelBpe:
    """Encoder and decoder of a HF byte-level BPE tokenizer.json."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        model = spec["model"]
        if model.get("type") != "BPE" or \
                (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
            raise ValueError(f"{path} is not a byte-level BPE tokenizer")
        self.vocab = model["vocab"]
        self.by_id = {i: t for t, i in self.vocab.items()}
        self.special = {t["content"]: t["id"]
                        for t in spec.get("added_tokens", [])}
        for content, i in self.special.items():
            self.by_id[i] = content
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
                  for m in model["merges"]]
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_map = _bytes_to_unicode()
        self.unbyte = {c: b for b, c in self.byte_map.items()}
        self.cache = {}

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get(pair, 1 << 62), i)
                     for i, pair in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 62:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        pattern = "(" + "|".join(re.escape(s) for s in self.special) + ")"
        for piece in (re.split(pattern, text) if self.special else [text]):
            if piece in self.special:
                ids.append(self.special[piece])
                continue
            for word in _PRETOKENIZE.findall(piece):
                ids.extend(self._bpe("".join(
                    self.byte_map[b] for b in word.encode("utf-8"))))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            token = self.by_id.get(int(i), "")
            if int(i) in self.special.values():
                out += token.encode("utf-8")
            else:
                out += bytes(self.unbyte[c] for c in token if c in self.unbyte)
        return out.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------
# The connector: seqkv in the shape of vLLM's KV-connector hooks.


class SeqkvConnector:
    def __init__(self, client, model, layout, codec=None, namespace=None):
        self.client, self.model, self.layout = client, model, layout
        self.codec, self.namespace = codec, namespace

    def register(self, chunk_tokens=0):
        """Registers the model's layout (idempotent)."""
        return self.client.register_model(self.model, self.layout,
                                          chunk_tokens=chunk_tokens)

    def get_num_matched_tokens(self, tokens):
        """Tokens of the prompt whose KV seqkv can serve. At least the last
        prompt token is always computed: its logits start generation."""
        matched = self.client.lookup(self.model, tokens,
                                     namespace=self.namespace).matched_tokens
        return min(matched, len(tokens) - 1)

    def load(self, tokens, num_tokens):
        """K and V ([layers, kv_heads, n, head_dim] torch bf16) of the first
        num_tokens tokens; n may be smaller if chunks were evicted since the
        lookup."""
        got = self.client.get(self.model, tokens[:num_tokens],
                              namespace=self.namespace, as_torch=True)
        return got.k, got.v

    def save(self, tokens, k, v):
        """Stores the whole sequence; seqkv keeps only the chunks it lacks."""
        return self.client.put(self.model, tokens, k, v, codec=self.codec,
                               namespace=self.namespace)


class Worker:
    def __init__(self, llama, connector):
        self.llama, self.connector = llama, connector

    def prefill(self, prompt):
        """(logits of the prompt's last token, k, v, reused count).

        The last token always runs on its own, as in decoding: matrix
        products round differently with the number of rows, so this way a
        prompt whose cache came from seqkv continues bit for bit as the run
        that computed that cache did."""
        reused = self.connector.get_num_matched_tokens(prompt) if len(
            prompt) > 1 else 0
        k = v = None
        if reused:
            k, v = self.connector.load(prompt, reused)
            reused = k.shape[2]
            if reused == 0:
                k = v = None
        if len(prompt) - reused > 1:
            _, k, v = self.llama.forward(prompt[reused:-1], k, v)
        logits, k, v = self.llama.forward(prompt[-1:], k, v)
        return logits, k, v, reused

    def run(self, prompt, max_new_tokens, stop_at_eos=False):
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("the prompt has no tokens")
        start = time.perf_counter()
        logits, k, v, reused = self.prefill(prompt)
        prefill_s = time.perf_counter() - start
        last_logits = logits[-1].clone()
        generated = []
        next_token = int(logits[-1].argmax())
        while True:
            generated.append(next_token)
            if len(generated) >= max_new_tokens or (
                    stop_at_eos and next_token == self.llama.eos_token_id):
                break
            logits, k, v = self.llama.forward([next_token], k, v)
            next_token = int(logits[-1].argmax())
        # The cache covers the prompt and every generated token but the
        # last, which has not been run yet.
        sequence = prompt + generated[:-1]
        put = self.connector.save(sequence, k, v)
        return {
            "prompt_tokens": len(prompt),
            "reused_tokens": reused,
            "prefilled_tokens": len(prompt) - reused,
            "prefill_s": round(prefill_s, 4),
            "generated": generated,
            "stored_tokens": len(sequence),
            "chunks_new": put.chunks_new,
            "chunks_deduped": put.chunks_deduped,
            "last_prompt_logits": last_logits,
        }


# --------------------------------------------------------------------------


def parse_tokens(text):
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise SystemExit(f"--tokens: {text!r} is not a list of integers")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Reuse the cached prefix of each prompt from seqkv, "
        "prefill the rest, generate, store the grown cache.")
    parser.add_argument("--model_dir", required=True,
                        help="HF model directory: config.json, safetensors "
                        "weights, optionally tokenizer.json")
    parser.add_argument("--model", required=True,
                        help="model name in seqkv")
    parser.add_argument("--server", default="127.0.0.1:50551",
                        help="seqkv address, host:port or unix:/path")
    parser.add_argument("--api_key", default=os.environ.get("SEQKV_API_KEY"),
                        help="API key (default $SEQKV_API_KEY)")
    parser.add_argument("--tls_ca", help="PEM root certificate: turns on TLS")
    parser.add_argument("--tls_cert", help="PEM client certificate (mTLS)")
    parser.add_argument("--tls_key", help="PEM client key (mTLS)")
    parser.add_argument("--namespace", help="seqkv namespace")
    parser.add_argument("--codec", help="codec of the Puts (server default)")
    parser.add_argument("--chunk_tokens", type=int, default=0,
                        help="chunk size when registering (0: server default)")
    parser.add_argument("--tokens", action="append", default=[],
                        help="a prompt as token ids, '0,464,9916'; repeatable")
    parser.add_argument("--prompt", action="append", default=[],
                        help="a prompt as text (needs tokenizer.json; BOS "
                        "added); repeatable")
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--compute", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if not args.tokens and not args.prompt:
        parser.error("give at least one --tokens or --prompt")
    if args.max_new_tokens < 1:
        parser.error("--max_new_tokens must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    prompts = [parse_tokens(t) for t in args.tokens]
    if any(not p for p in prompts):
        parser.error("--tokens: a prompt has no tokens")
    try:
        llama = Llama(args.model_dir, args.compute)
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot load the model in {args.model_dir}: {error}",
              file=sys.stderr)
        return 2
    tokenizer = None
    tokenizer_path = os.path.join(args.model_dir, "tokenizer.json")
    if os.path.exists(tokenizer_path):
        try:
            tokenizer = ByteLevelBpe(tokenizer_path)
        except (ValueError, KeyError) as error:
            print(f"tokenizer not used: {error}", file=sys.stderr)
    for text in args.prompt:
        if tokenizer is None:
            parser.error("--prompt needs a byte-level BPE tokenizer.json")
        bos = [] if llama.bos_token_id is None else [llama.bos_token_id]
        prompts.append(bos + tokenizer.encode(text))

    tls = None
    if args.tls_ca:
        tls = seqkv.Tls(args.tls_ca, args.tls_cert, args.tls_key)
    try:
        with seqkv.Client(args.server, api_key=args.api_key, tls=tls) as client:
            connector = SeqkvConnector(client, args.model, llama.layout,
                                       args.codec, args.namespace)
            connector.register(args.chunk_tokens)
            worker = Worker(llama, connector)
            for prompt in prompts:
                result = worker.run(prompt, args.max_new_tokens)
                del result["last_prompt_logits"]
                if tokenizer is not None:
                    result["text"] = tokenizer.decode(result["generated"])
                print(json.dumps(result), flush=True)
    except seqkv.Error as error:
        print(f"seqkv: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
