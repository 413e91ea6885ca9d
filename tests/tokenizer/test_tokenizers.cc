#include "tests/tokenizer/test_tokenizers.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

namespace alibi::tokenizer::testing {
namespace {

const Tokenizer& LoadOrDie(const std::string& relative) {
  auto tokenizer = Tokenizer::FromFile(DataPath(relative));
  if (!tokenizer.ok()) {
    std::cerr << "cannot load " << relative << ": " << tokenizer.status()
              << "\n";
    std::abort();
  }
  return *tokenizer->release();  // lives for the whole process
}

}  // namespace

std::string DataPath(const std::string& relative) {
  return std::string(ALIBI_TEST_DATA_DIR) + "/" + relative;
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "cannot open " << path << "\n";
    std::abort();
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const Tokenizer& BloomTokenizer() {
  static const Tokenizer& t = LoadOrDie("models/tiny-bloom/tokenizer.json");
  return t;
}

const Tokenizer& NeoxTokenizer() {
  static const Tokenizer& t = LoadOrDie("models/tiny-mpt/tokenizer.json");
  return t;
}

const Tokenizer& ReplitTokenizer() {
  static const Tokenizer& t =
      LoadOrDie("tokenizers/replit-code-v1_5-3b/tokenizer.json");
  return t;
}

}  // namespace alibi::tokenizer::testing
