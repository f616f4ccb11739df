// Which binary holds which command, and what `--help` says about each: the
// one place that knows every command of seqkv, seqkv-bench and seqkv-lm, so
// that each of them can list and dispatch the others' commands.
#include <algorithm>

#include "client/cli/command.h"

namespace seqkv::cli {
namespace {

// Sorted by name.
constexpr CommandInfo kCommands[] = {
    {"bench", "seqkv-bench",
     "load generator: concurrent Put/Get/Lookup with latency percentiles",
     "seqkv bench (--duration_s S | --ops N) [--server ADDR] [--clients N] "
     "[--op put|get|lookup|mix] [--layout NAME] [--chunk_tokens T] "
     "[--codec C] [--json]\n"
     "  Writes --op put's data into the server; runs until --duration_s or "
     "--ops, whichever comes first.",
     "layout,chunk_tokens,codec,model,json,connection"},
    {"calibrate", "seqkv-lm",
     "measure per-(layer, K/V) sensitivity on a real model; write a profile",
     "seqkv calibrate --model_dir DIR --out PROFILE.json [--noise_rel_mse R] "
     "[--floor_rel_mse F] [--prefix_tokens N] [--max_tokens N] "
     "FILE.safetensors...",
     "model_dir,out,model,prefix_tokens,max_tokens"},
    {"codec-bench", "seqkv-bench",
     "measure codecs and peer compressors on KV cache dumps (offline)",
     "seqkv codec-bench [--codecs LIST] [--threads N] [--chunk_tokens N] "
     "[--model_dir DIR] [--profile FILE] [--json] FILE.safetensors...",
     "chunk_tokens,model_dir,profile,rope,json"},
    {"delete", "seqkv", "remove a cached prefix and everything stored below it",
     "seqkv delete --model NAME [--tokens FILE.safetensors]\n"
     "  Without --tokens, deletes every cached prefix of the model.",
     "model,tokens,namespace,connection"},
    {"eval", "seqkv-lm",
     "measure a codec's effect on a real model's predictions (dNLL, KL)",
     "seqkv eval --model_dir DIR --codec C[,C...] [--profile P] "
     "[--prefix_tokens N] [--server ADDR] [--documents TOKENS.safetensors "
     "[--num_documents N]] [FILE.safetensors...]",
     "model_dir,codec,profile,model,chunk_tokens,prefix_tokens,max_tokens,"
     "namespace,json,connection"},
    {"generate", "seqkv-lm",
     "greedy generation that reuses and stores KV caches in seqkv",
     "seqkv generate --model_dir DIR --server ADDR (--prompt TEXT | --tokens "
     "0,12,34 | --tokens FILE) [--max_new_tokens N] [--codec C] "
     "[--model NAME] [--chunk_tokens N] [--compare]",
     "model_dir,tokens,add_bos,model,chunk_tokens,codec,namespace,json,"
     "connection"},
    {"get", "seqkv", "fetch the cache of the longest stored prefix into a file",
     "seqkv get --model NAME --tokens FILE.safetensors --out OUT.safetensors",
     "model,tokens,out,alignment,namespace,connection"},
    {"lookup", "seqkv",
     "length of the longest stored prefix of a file's tokens",
     "seqkv lookup --model NAME [--by_chunks] FILE.safetensors",
     "model,namespace,connection"},
    {"model", "seqkv",
     "register a model (layout, chunk size, codec state) or show it",
     "seqkv model register --model NAME (--layout 32x8x128:bf16 "
     "[--rope rotate_half:500000] | --model_dir DIR) [--profile FILE] "
     "[--chunk_tokens N] [--default_codec C]\n"
     "       seqkv model show --model NAME",
     "model,layout,model_dir,rope,profile,chunk_tokens,connection"},
    {"prefill", "seqkv-lm",
     "write a model's KV cache of a text or token ids to a file",
     "seqkv prefill --model_dir DIR (--text TEXT | --tokens 0,12,34 | "
     "--tokens FILE) --out OUT.safetensors [--add_bos=false]\n"
     "  Writes tokens (int32) and post-RoPE k, v [layers, kv_heads, T, "
     "head_dim] in the model's dtype.",
     "model_dir,tokens,out,add_bos"},
    {"put", "seqkv", "store KV caches from safetensors files",
     "seqkv put --model NAME [--codec C] FILE.safetensors...",
     "model,codec,rope,namespace,connection"},
    {"replay", "seqkv-bench",
     "replay a Mooncake request trace and measure the hit rate",
     "seqkv replay --trace FILE [--requests N] [--capacity_blocks N | "
     "--capacity_bytes N | --capacity_raw_fraction F] [--retention plt|lru] "
     "[--tiers T] [--tier_shares E,L1] [--speedup X] [--kv_source GLOB "
     "--model_dir DIR [--profile FILE]] [--server ADDR] [--layout "
     "1x1x8:bf16] [--json]",
     "server,admin,layout,codec,model,json"},
    {"stats", "seqkv",
     "print the server's counters, per tenant, from its admin port",
     "seqkv stats [--admin HOST:PORT] [--tenant T] [--json] "
     "[--admin_token TOKEN]",
     "admin,json"},
};

}  // namespace

std::span<const CommandInfo> CommandTable() { return kCommands; }

const CommandInfo* FindCommandInfo(std::string_view name) {
  const auto it = std::find_if(
      std::begin(kCommands), std::end(kCommands),
      [name](const CommandInfo& info) { return info.name == name; });
  return it == std::end(kCommands) ? nullptr : &*it;
}

}  // namespace seqkv::cli
