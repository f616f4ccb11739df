"""The Python worker (examples/python_worker.py) on the real model in
shared/data/lm: its K/V match the stored caches the reference forward pass
made, a prompt whose prefix comes back from seqkv gives the logits of a
full prefill, and a second run prefills only the new tokens."""

import json
import os
import subprocess
import sys
import unittest

import numpy as np
import torch

import seqkv
from seqkv_test_util import (SOURCE_DIR, ServerProcess, data_path,
                             require_data)

LM = "lm/config.json"
DEV_00 = "kv/a_dev_00.safetensors"
RAG_00 = "kv/b_rag_00_D1_D2.safetensors"
RAG_02 = "kv/b_rag_02_D1_D3.safetensors"
WORKER = os.path.join(SOURCE_DIR, "examples", "python_worker.py")

_llama = None


def llama():
    global _llama
    if _llama is None:
        import python_worker
        _llama = python_worker.Llama(data_path("lm"), "bf16")
    return _llama


def bf16_bits(tensor):
    return tensor.view(torch.int16).numpy().view(np.uint16)


@require_data(LM, DEV_00)
class ReferenceTest(unittest.TestCase):
    """K (post-RoPE) and V against the caches HF LlamaForCausalLM made in
    bf16 on a GPU; bounds as for the C++ runtime (docs/RUNTIME.md)."""

    def test_kv_and_logprobs_match_the_reference(self):
        tokens = 320
        cache = seqkv.read_kv_file(data_path(DEV_00))
        reference, _ = seqkv.safetensors.load(data_path(DEV_00), ["logprobs"])
        logits, k, v = llama().forward(cache.tokens[:tokens])
        for name, got, want in (("k", bf16_bits(k), cache.k),
                                ("v", bf16_bits(v), cache.v)):
            want = want[:, :, :tokens]
            self.assertEqual(got.shape, want.shape)
            g = seqkv.bf16_to_float32(got).astype(np.float64)
            w = seqkv.bf16_to_float32(want).astype(np.float64)
            rel_mse = np.mean((g - w) ** 2) / np.mean(w ** 2)
            layer0 = np.mean(got[0] == want[0])
            print(f"{name}: relative MSE {rel_mse:.2e}, layer 0 "
                  f"{layer0:.4f} bit-identical, all layers "
                  f"{np.mean(got == want):.3f}, max |diff| "
                  f"{np.abs(g - w).max():.4f}")
            self.assertGreater(layer0, 0.99)
            self.assertLess(rel_mse, 5e-5 if name == "k" else 1.5e-4)
        logprobs = torch.log_softmax(logits, -1)[:-1].gather(
            1, torch.as_tensor(cache.tokens[1:tokens], dtype=torch.int64)[:, None])
        diff = np.abs(logprobs[:, 0].numpy() - reference["logprobs"][:tokens - 1])
        print(f"logprobs: mean |diff| {diff.mean():.4f}, max {diff.max():.4f}")
        self.assertLess(diff.mean(), 0.03)
        self.assertLess(diff.max(), 0.3)

    def test_tokenizer_round_trips_the_stored_ids(self):
        import python_worker
        tokenizer = python_worker.ByteLevelBpe(data_path("lm/tokenizer.json"))
        ids = [int(t) for t in seqkv.read_kv_file(data_path(DEV_00)).tokens]
        text = tokenizer.decode(ids[1:])  # after the BOS
        self.assertEqual(tokenizer.encode(text), ids[1:])
        self.assertEqual(tokenizer.encode("<|endoftext|>The"),
                         [0] + tokenizer.encode("The"))


@require_data(LM, RAG_00, RAG_02)
class ReuseTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_reused_prefix_gives_the_logits_of_a_full_prefill(self):
        import python_worker
        model = llama()
        first = [int(t) for t in seqkv.read_kv_file(data_path(RAG_00)).tokens]
        second = [int(t) for t in seqkv.read_kv_file(data_path(RAG_02)).tokens]
        shared = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
        with seqkv.Client(self.server.address, timeout=60) as client:
            connector = python_worker.SeqkvConnector(client, "kvlm-py",
                                                     model.layout, "lossless")
            self.assertTrue(connector.register())
            self.assertEqual(client.get_model("kvlm-py").layout, model.layout)
            worker = python_worker.Worker(model, connector)

            run = worker.run(first[:400], max_new_tokens=4)
            self.assertEqual((run["reused_tokens"], run["prefilled_tokens"]),
                             (0, 400))
            self.assertEqual(run["stored_tokens"], 403)

            # Another prompt sharing a prefix: only its own tokens prefill.
            run = worker.run(second, max_new_tokens=4)
            self.assertEqual(run["reused_tokens"], shared)
            self.assertEqual(run["prefilled_tokens"], len(second) - shared)
            full_logits, _, _ = model.forward(second)
            reused_logits = run["last_prompt_logits"]
            diff = (reused_logits - full_logits[-1]).abs().max().item()
            scale = full_logits[-1].abs().max().item()
            print(f"last-token logits, reused vs full prefill: max |diff| "
                  f"{diff:.4f} of max |logit| {scale:.2f}")
            # Within a few bf16 steps at the logits' magnitude.
            self.assertLess(diff, scale * 2 ** -6)
            self.assertEqual(int(reused_logits.argmax()),
                             int(full_logits[-1].argmax()))

            # The same prompt again: everything but its last token reused.
            again = worker.run(second, max_new_tokens=4)
            self.assertEqual(again["prefilled_tokens"], 1)
            self.assertEqual(again["chunks_new"], 0)

    def test_command_line_second_run_prefills_only_new_tokens(self):
        first = seqkv.read_kv_file(data_path(RAG_00)).tokens
        prompt = ",".join(str(t) for t in first[:300])
        longer = ",".join(str(t) for t in first[:420])
        command = [sys.executable, WORKER, "--model_dir", data_path("lm"),
                   "--model", "kvlm-cli", "--server", self.server.address,
                   "--max_new_tokens", "3"]

        def run(*prompts):
            args = [a for p in prompts for a in ("--tokens", p)]
            done = subprocess.run(command + args, capture_output=True,
                                  text=True, timeout=300, env=os.environ)
            self.assertEqual(done.returncode, 0, done.stderr)
            return [json.loads(line) for line in done.stdout.splitlines()]

        (cold,) = run(prompt)
        self.assertEqual(cold["prefilled_tokens"], 300)
        self.assertEqual(len(cold["generated"]), 3)
        self.assertIn("text", cold)
        # A second worker process: the cache persisted in the server.
        warm, grown = run(prompt, longer)
        self.assertEqual(warm["reused_tokens"], 299)
        self.assertEqual(warm["prefilled_tokens"], 1)
        self.assertEqual(warm["generated"], cold["generated"])
        # The stored sequence is the prompt plus the generated tokens; the
        # longer prompt shares the first 300 with it.
        extra = 0
        while extra < 2 and cold["generated"][extra] == first[300 + extra]:
            extra += 1
        self.assertEqual(grown["reused_tokens"], 300 + extra)
        self.assertEqual(grown["prefilled_tokens"],
                         420 - grown["reused_tokens"])

    def test_command_line_errors(self):
        done = subprocess.run(
            [sys.executable, WORKER, "--model_dir", data_path("lm"),
             "--model", "m", "--server", self.server.address, "--tokens",
             "1,x"], capture_output=True, text=True, timeout=120)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("not a list of integers", done.stderr)
        done = subprocess.run(
            [sys.executable, WORKER, "--model_dir", self.server.file("none"),
             "--model", "m", "--tokens", "1"], capture_output=True,
            text=True, timeout=120)
        self.assertEqual(done.returncode, 2)
        self.assertIn("cannot load the model", done.stderr)
        self.assertIn("config.json", done.stderr)


if __name__ == "__main__":
    unittest.main()
