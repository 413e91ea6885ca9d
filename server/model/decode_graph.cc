#include "server/model/decode_graph.h"

#include <algorithm>
#include <cstddef>

#include "common/logging.h"
#include "common/status_macros.h"

namespace alibi::model {

const std::vector<int>& DecodeBatchBuckets() {
  static const std::vector<int> buckets = [] {
    std::vector<int> b = {1, 2, 4};
    for (int n = 8; n <= 512; n += n < 64    ? 8
                                   : n < 128 ? 16
                                   : n < 256 ? 32
                                             : 64) {
      b.push_back(n);
    }
    return b;
  }();
  return buckets;
}

int PaddedDecodeSeqs(int max_seqs) {
  const std::vector<int>& buckets = DecodeBatchBuckets();
  const auto it = std::lower_bound(buckets.begin(), buckets.end(), max_seqs);
  return it == buckets.end() ? max_seqs : *it;
}

std::optional<DecodeBucket> ChooseDecodeBucket(const ForwardBatch& batch,
                                               int block_size) {
  const int s = batch.num_seqs();
    if (block_size <= 0 || s == 0 || batch.num_tokens() != s) return std::nullopt;
  // Windowed steps run eagerly: a recording holds no window metadata.
  if (!batch.windows.empty()) return std::nullopt;
  int max_context = 0;
  for (int i = 0; i < s; ++i) {
    if (batch.query_start[i + 1] - batch.query_start[i] != 1) {
      return std::nullopt;
    }
    max_context = std::max(max_context, batch.context_lens[i]);
  }
  if (max_context > kMaxDecodeGraphContext) return std::nullopt;
  const std::vector<int>& buckets = DecodeBatchBuckets();
  const auto it = std::lower_bound(buckets.begin(), buckets.end(), s);
  if (it == buckets.end()) return std::nullopt;
  DecodeBucket bucket;
  bucket.batch = *it;
  bucket.context = kMinDecodeGraphContext;
  while (bucket.context < max_context) bucket.context *= 2;
  bucket.blocks_per_seq = (bucket.context + block_size - 1) / block_size;
  bucket.key = static_cast<uint64_t>(bucket.batch) << 32 |
               static_cast<uint64_t>(bucket.context);
  return bucket;
}

ForwardBatch PadToBucket(const ForwardBatch& batch,
                         const DecodeBucket& bucket) {
  const int s = batch.num_seqs(), b = bucket.batch;
  const int width = bucket.blocks_per_seq;
  ForwardBatch out;
  out.token_ids = batch.token_ids;
  out.token_ids.resize(b, 0);
  out.query_start.resize(b + 1);
  for (int i = 0; i <= b; ++i) out.query_start[i] = i;
  out.context_lens = batch.context_lens;
  out.context_lens.resize(b, 1);
  // A sequence's blocks all lie within the bucket's width; padding rows
  // see block 0.
  out.block_tables.assign(static_cast<size_t>(b) * width, 0);
  const int copy = std::min(width, batch.max_blocks_per_seq);
  for (int i = 0; i < s; ++i) {
    std::copy_n(batch.block_tables.begin() +
                    static_cast<ptrdiff_t>(i) * batch.max_blocks_per_seq,
                copy,
                out.block_tables.begin() + static_cast<ptrdiff_t>(i) * width);
  }
  out.max_blocks_per_seq = width;
  out.slot_mapping = batch.slot_mapping;
  out.slot_mapping.resize(b, -1);
  out.logit_rows = batch.logit_rows;
  return out;
}

absl::Status RunAsGraph(kernels::Backend& backend, std::optional<uint64_t> key,
                        absl::FunctionRef<absl::Status()> ops) {
  if (!key.has_value()) return ops();
  ASSIGN_OR_RETURN(const kernels::GraphMode mode, backend.BeginGraph(*key));
  switch (mode) {
    case kernels::GraphMode::kReplayed:
      return absl::OkStatus();
    case kernels::GraphMode::kEager:
      return ops();
    case kernels::GraphMode::kCapture:
      break;
  }
  const absl::Status issued = ops();
  const absl::Status ended = backend.EndGraph(/*keep=*/issued.ok());
  if (issued.ok() && ended.ok()) return absl::OkStatus();
  if (!ended.ok()) {
    ALIBI_LOG(WARNING) << "graph " << *key
                       << " could not be captured, running it eagerly: "
                       << ended;
  }
  return ops();  // nothing ran (an op's own error shows again)
}

}  // namespace alibi::model
