// Graphs for decode-only steps (Backend::BeginGraph): which steps replay a
// recording, the padded batch they run, and the capture / replay protocol
// around the ops that are recorded.
//
// A decode-only step (every sequence one query row) of S sequences runs as a
// batch of B >= S sequences, B the smallest of DecodeBatchBuckets() that
// holds them, with block tables W blocks wide, W covering the context bucket
// (the next power of two of its longest context, at least
// kMinDecodeGraphContext tokens). Every step of one (B, W) then issues the
// same ops on the same buffers with the same sizes, so its embedding and
// layer stack are recorded once per bucket and replayed. Padding sequences
// are inert: token 0, a context of one key in block 0, no KV slot (-1, which
// WriteKv skips) and no logits; each output row depends on its own row only,
// so the real rows' results are those of the unpadded batch (bitwise on the
// CPU backends, up to rounding where kernels choose by shape).
//
// Thread-safety: pure functions; RunAsGraph uses the backend as its caller
// does (the engine thread).
#ifndef ALIBI_SERVER_MODEL_DECODE_GRAPH_H_
#define ALIBI_SERVER_MODEL_DECODE_GRAPH_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "kernels/backend.h"
#include "server/model/model.h"

namespace alibi::model {

// Contexts of a decode graph: at least this many tokens, at most
// kMaxDecodeGraphContext (longer steps run eagerly; attention dominates
// them anyway).
inline constexpr int kMinDecodeGraphContext = 256;
inline constexpr int kMaxDecodeGraphContext = 1 << 16;

struct DecodeBucket {
  int batch = 0;           // sequences after padding
  int context = 0;         // longest context of the bucket, tokens
  int blocks_per_seq = 0;  // block-table width: ceil(context / block_size)
  uint64_t key = 0;        // the graph key of (batch, context)
};

// 1, 2, 4, then every 8 up to 64, every 16 up to 128, every 32 up to 256,
// every 64 up to 512: a step pads by at most max(8, a quarter of the
// smaller bucket) rows, cheap where decode reads the weights once per step
// whatever its rows.
const std::vector<int>& DecodeBatchBuckets();

// The most sequences a decode step of up to `max_seqs` sequences runs with
// once padded (its bucket, or max_seqs past the largest bucket): what a
// server reserves its workspace for, besides its token budget.
int PaddedDecodeSeqs(int max_seqs);

// The bucket of `batch` with KV blocks of `block_size` tokens, or nullopt
// when it does not run as a graph: not decode-only (a query run of more than
// one row, or none), more sequences than the largest bucket, a context past
// kMaxDecodeGraphContext, or sliding windows.
std::optional<DecodeBucket> ChooseDecodeBucket(const ForwardBatch& batch,
                                               int block_size);

// `batch` padded to `bucket`'s sequences and block-table width (padding as
// described above; logit_rows unchanged). `batch` must be in the bucket
// (ChooseDecodeBucket).
ForwardBatch PadToBucket(const ForwardBatch& batch, const DecodeBucket& bucket);

// Issues `ops` on `backend` as the graph `key` (Backend::BeginGraph): on a
// replay issues nothing, on a capture issues and then ends it. When the
// capture fails nothing ran, and `ops` runs again eagerly. Without a key,
// just `ops`.
absl::Status RunAsGraph(kernels::Backend& backend, std::optional<uint64_t> key,
                        absl::FunctionRef<absl::Status()> ops);

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_DECODE_GRAPH_H_
