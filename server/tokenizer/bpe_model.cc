#include "server/tokenizer/bpe_model.h"

#include <queue>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace alibi::tokenizer::internal {

const WordCache::Shard& WordCache::ShardFor(absl::string_view word) const {
  return shards_[absl::Hash<absl::string_view>()(word) % kShards];
}

bool WordCache::Lookup(absl::string_view word,
                       std::vector<int32_t>* ids) const {
  const Shard& shard = ShardFor(word);
  std::lock_guard<std::mutex> lock(shard.mu);
  const auto it = shard.map.find(word);
  if (it == shard.map.end()) return false;
  ids->insert(ids->end(), it->second.begin(), it->second.end());
  return true;
}

void WordCache::Insert(absl::string_view word,
                       const std::vector<int32_t>& ids) const {
  const Shard& shard = ShardFor(word);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.map.size() >= kMaxEntriesPerShard) shard.map.clear();
  shard.map.try_emplace(word, ids);
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    absl::flat_hash_map<std::string, int32_t> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges,
    Options options) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->vocab_ = std::move(vocab);
  model->options_ = std::move(options);
  model->merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto a_it = model->vocab_.find(a);
    const auto b_it = model->vocab_.find(b);
    joined.assign(a).append(b);
    const auto new_it = model->vocab_.find(joined);
    const std::string* missing = a_it == model->vocab_.end()     ? &a
                                 : b_it == model->vocab_.end()   ? &b
                                 : new_it == model->vocab_.end() ? &joined
                                                                 : nullptr;
    if (missing != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.merges[", rank, "]: token \"", *missing,
                       "\" is not in the vocabulary"));
    }
    // Like the library's HashMap collect: a repeated pair takes the later
    // rank.
    model->merges_.insert_or_assign(
        PairKey(a_it->second, b_it->second),
        MergeValue{static_cast<int32_t>(rank), new_it->second});
  }
  model->char_ids_.assign(kDirectChars, -1);
  for (const auto& [token, id] : model->vocab_) {
    size_t pos = 0;
    if (token.empty()) continue;
    const char32_t cp = DecodeUtf8(token, &pos);
    if (pos == token.size() && cp < kDirectChars) model->char_ids_[cp] = id;
  }
  if (model->options_.unk_token.has_value()) {
    const auto it = model->vocab_.find(*model->options_.unk_token);
    if (it != model->vocab_.end()) model->unk_id_ = it->second;
  }
  return model;
}

int32_t BpeModel::CharId(absl::string_view word, size_t pos, size_t len) const {
  if (len <= 2) {  // a code point below U+0800: direct table
    return char_ids_[DecodeUtf8(word, &pos)];
  }
  const auto it = vocab_.find(word.substr(pos, len));
  return it == vocab_.end() ? -1 : it->second;
}

absl::Status BpeModel::Tokenize(absl::string_view word,
                                std::vector<int32_t>* ids) const {
  if (word.empty()) return absl::OkStatus();
  if (options_.ignore_merges) {
    const auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return absl::OkStatus();
    }
  }
  const bool cacheable = word.size() < WordCache::kMaxWordBytes;
  if (cacheable && cache_.Lookup(word, ids)) return absl::OkStatus();
  const size_t first = ids->size();
  if (absl::Status s = MergeWord(word, ids); !s.ok()) return s;
  if (cacheable) {
    cache_.Insert(word, std::vector<int32_t>(ids->begin() + first, ids->end()));
  }
  return absl::OkStatus();
}

absl::Status BpeModel::MergeWord(absl::string_view word,
                                 std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    int32_t len;  // 0 once merged into its left neighbour
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id, size_t byte_len) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, static_cast<int32_t>(byte_len)});
    if (index > 0) symbols[index - 1].next = index;
  };

  // Word::add for each character, with the library's unk handling.
  bool have_unk = false;
  size_t unk_len = 0;
  for (size_t pos = 0; pos < word.size();) {
    const size_t len = Utf8CharLength(static_cast<unsigned char>(word[pos]));
    const int32_t id = CharId(word, pos, len);
    pos += len;
    if (id >= 0) {
      if (have_unk) {
        add(*unk_id_, unk_len);
        have_unk = false;
      }
      add(id, len);
      continue;
    }
    if (!options_.unk_token.has_value()) continue;  // dropped silently
    if (!unk_id_.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unk_token \"", *options_.unk_token, "\" is not in the vocabulary"));
    }
    if (have_unk && options_.fuse_unk) {
      unk_len += len;
    } else {
      if (have_unk) add(*unk_id_, unk_len);
      have_unk = true;
      unk_len = len;
    }
  }
  if (have_unk) add(*unk_id_, unk_len);

  // Word::merge_all: a min-heap on (rank, position); stale entries are
  // recognised by re-checking the pair they were made for.
  struct Merge {
    int32_t pos;
    int32_t rank;
    int32_t new_id;
  };
  struct Later {
    bool operator()(const Merge& a, const Merge& b) const {
      if (a.rank != b.rank) return a.rank > b.rank;
      return a.pos > b.pos;
    }
  };
  std::vector<Merge> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Merge, std::vector<Merge>, Later> queue(
      Later(), std::move(storage));
  auto lookup = [this](int32_t a, int32_t b) -> const MergeValue* {
    const auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeValue* m = lookup(symbols[i].id, symbols[i + 1].id)) {
      queue.push({static_cast<int32_t>(i), m->rank, m->new_id});
    }
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (current.len == 0 || current.next == -1) continue;
    const int32_t next_pos = current.next;
    const Symbol right = symbols[next_pos];
    const MergeValue* target = lookup(current.id, right.id);
    if (target == nullptr || target->new_id != top.new_id) continue;

    current.id = top.new_id;
    current.len += right.len;
    current.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0 && right.next < static_cast<int32_t>(symbols.size())) {
      symbols[right.next].prev = top.pos;
    }
    if (current.prev >= 0) {
      if (const MergeValue* m = lookup(symbols[current.prev].id, current.id)) {
        queue.push({current.prev, m->rank, m->new_id});
      }
    }
    if (current.next >= 0 &&
        current.next < static_cast<int32_t>(symbols.size())) {
      if (const MergeValue* m = lookup(current.id, symbols[current.next].id)) {
        queue.push({top.pos, m->rank, m->new_id});
      }
    }
  }
  for (const Symbol& s : symbols) {
    if (s.len != 0) ids->push_back(s.id);
  }
  return absl::OkStatus();
}

}  // namespace alibi::tokenizer::internal
