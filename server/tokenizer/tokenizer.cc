#include "server/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "server/tokenizer/bpe_tokenizer.h"

namespace alibi::tokenizer {

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    absl::string_view json_text) {
  return internal::BpeTokenizer::Parse(json_text);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  auto tokenizer = FromJson(contents.str());
  if (!tokenizer.ok()) {
    return Annotate(tokenizer.status(), absl::StrCat(path, ": "));
  }
  return tokenizer;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer,
                                       bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDecoder::Add(int32_t id) {
  if (skip_special_tokens_ && tokenizer_.IsSpecial(id)) return std::string();
  pending_ += tokenizer_.TokenBytes(id);
  const size_t keep = IncompleteUtf8TailStart(pending_);
  std::string out = LossyUtf8(absl::string_view(pending_).substr(0, keep));
  pending_.erase(0, keep);
  return out;
}

std::string IncrementalDecoder::Finish() {
  std::string out = LossyUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace alibi::tokenizer
