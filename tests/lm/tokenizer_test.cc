#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "model/kv_cache.h"
#include "nlohmann/json.hpp"
#include "tests/test_data.h"
#include "tools/lm/bpe_tokenizer.h"

namespace seqkv::lm {
namespace {

const std::string kDataDir = SEQKV_DATA_DIR;

const BpeTokenizer& Tokenizer() {
  static const BpeTokenizer* tokenizer = [] {
    auto loaded = BpeTokenizer::Load(kDataDir + "/lm/tokenizer.json");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return new BpeTokenizer(*std::move(loaded));
  }();
  return *tokenizer;
}

std::vector<int32_t> FileTokens(const std::string& name, size_t begin,
                                size_t end) {
  auto cache = ReadKvCacheFile(kDataDir + "/kv/" + name + ".safetensors");
  EXPECT_TRUE(cache.ok()) << cache.status();
  end = std::min(end, cache->tokens.size());
  return {cache->tokens.begin() + begin, cache->tokens.begin() + end};
}

// Set a holds whole documents tokenized by the reference tokenizer: decoding
// and encoding again must give the very same ids.
TEST(BpeTokenizerTest, ReencodesDumpedDocuments) {
  SEQKV_NEEDS_TEST_DATA("lm/tokenizer.json", "kv/a_dev_00.safetensors",
                        "kv/a_dev_01.safetensors", "kv/a_dev_03.safetensors",
                        "kv/a_dev_06.safetensors");
  for (const char* name : {"a_dev_00", "a_dev_01", "a_dev_03", "a_dev_06"}) {
    const std::vector<int32_t> ids = FileTokens(name, 1, 1 << 20);
    auto text = Tokenizer().Decode(ids);
    ASSERT_TRUE(text.ok()) << text.status();
    auto encoded = Tokenizer().Encode(*text);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(*encoded, ids) << name;
  }
}

// The RAG system prompt (tokens 1..90) and question were tokenized alone.
TEST(BpeTokenizerTest, ReencodesRagSegments) {
  SEQKV_NEEDS_TEST_DATA("lm/tokenizer.json", "kv/b_rag_00_D1_D2.safetensors");
  const std::vector<int32_t> system = FileTokens("b_rag_00_D1_D2", 1, 90);
  const std::vector<int32_t> question = FileTokens("b_rag_00_D1_D2", 480, 513);
  for (const auto& ids : {system, question}) {
    auto encoded = Tokenizer().Encode(*Tokenizer().Decode(ids));
    ASSERT_TRUE(encoded.ok());
    EXPECT_EQ(*encoded, ids);
  }
}

TEST(BpeTokenizerTest, DecodesTheChatToItsText) {
  SEQKV_NEEDS_TEST_DATA("lm/tokenizer.json", "kv/manifest.json",
                        "kv/c_chat_turn4.safetensors");
  std::ifstream in(kDataDir + "/kv/manifest.json");
  std::stringstream text;
  text << in.rdbuf();
  auto manifest = nlohmann::json::parse(text.str());
  auto decoded = Tokenizer().Decode(FileTokens("c_chat_turn4", 1, 1 << 20));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, manifest["chat_text"].get<std::string>());
}

TEST(BpeTokenizerTest, RoundTripsUnicodeAndWhitespace) {
  SEQKV_NEEDS_TEST_DATA("lm/tokenizer.json");
  for (std::string text :
       {std::string("Hello, world! It's 2024 -- don't   panic\n\n  x"),
        std::string("h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 "
                    "\xe6\x97\xa5\xe6\x9c\xac  \t\n"),
        std::string("")}) {
    auto ids = Tokenizer().Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    auto back = Tokenizer().Decode(*ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text);
  }
}

TEST(BpeTokenizerTest, SpecialTokensAndErrors) {
  SEQKV_NEEDS_TEST_DATA("lm/tokenizer.json");
  auto ids = Tokenizer().Encode("a<|endoftext|>b");
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 3u);
  EXPECT_EQ((*ids)[1], 0);
  EXPECT_EQ(Tokenizer().Encode("bad \xff utf8").status().code(),
            absl::StatusCode::kInvalidArgument);
  const int32_t out_of_range[] = {int32_t(Tokenizer().vocab_size())};
  EXPECT_EQ(Tokenizer().Decode(out_of_range).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(BpeTokenizer::Parse("{}").ok());
}

}  // namespace
}  // namespace seqkv::lm
