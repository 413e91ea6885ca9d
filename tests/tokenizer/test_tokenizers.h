// Shared fixtures for the tokenizer tests: the tokenizer.json files in
// tests/data, each parsed once per process.
//
// Thread-safety: the accessors are safe to call from any thread.
#ifndef ALIBI_TESTS_TOKENIZER_TEST_TOKENIZERS_H_
#define ALIBI_TESTS_TOKENIZER_TEST_TOKENIZERS_H_

#include <string>

#include "server/tokenizer/tokenizer.h"

namespace alibi::tokenizer::testing {

std::string DataPath(const std::string& relative);
std::string ReadFileOrDie(const std::string& path);

// tests/data/models/tiny-bloom/tokenizer.json (BLOOM pipeline).
const Tokenizer& BloomTokenizer();
// tests/data/models/tiny-mpt/tokenizer.json (GPT-NeoX-20B, NFC).
const Tokenizer& NeoxTokenizer();
// tests/data/tokenizers/replit-code-v1_5-3b/tokenizer.json.
const Tokenizer& ReplitTokenizer();

}  // namespace alibi::tokenizer::testing

#endif  // ALIBI_TESTS_TOKENIZER_TEST_TOKENIZERS_H_
