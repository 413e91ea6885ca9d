// Read-only access to one .safetensors file
// (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
//  "__metadata__": {"k": "v"}}, then the data section.
//
// The file is memory-mapped read-only and never copied; tensors are views into
// the mapping. Opening validates the whole header as strictly as the
// reference implementation: header length within the file and under 100 MB,
// JSON well formed, no duplicate keys, every dtype known, shapes and offsets
// non-negative integers without overflow, end - begin = numel * dtype size,
// tensors in range, not overlapping and covering the data section exactly.
// Every error names the file and, where one is at fault, the tensor.
//
// All safetensors dtypes are recognised (BOOL, U8..U64, I8..I64, F8_*, F16,
// BF16, F32, F64, and the sub-byte F4 / F6_*); only F32, F16 and BF16 can be
// taken as a weight (Tensor()), the others only described.
//
// If the file is truncated or rewritten by another process while mapped,
// reading a tensor may fault (SIGBUS): checkpoints are assumed immutable while
// the server runs.
//
// Thread-safety: immutable after Open; every method is safe from any thread.
#ifndef ALIBI_SERVER_MODEL_SAFETENSORS_H_
#define ALIBI_SERVER_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/backend.h"
#include "server/model/weights.h"

namespace alibi::model {

// Every dtype a safetensors header may name.
enum class SafetensorsDType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
  kF4,      // 4 bits (packed)
  kF6E2M3,  // 6 bits (packed)
  kF6E3M2,  // 6 bits (packed)
};

// "BF16" -> kBF16; nullopt for a string that is no safetensors dtype.
std::optional<SafetensorsDType> ParseSafetensorsDType(absl::string_view name);
// The header spelling: kBF16 -> "BF16".
absl::string_view SafetensorsDTypeName(SafetensorsDType dtype);
// Bits per element (1 byte for BOOL).
int SafetensorsDTypeBits(SafetensorsDType dtype);
// The weight dtype (kF32, kF16, kBF16), or nullopt for any other.
std::optional<kernels::DType> ToWeightDType(SafetensorsDType dtype);

struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  // Byte range in the data section (after the header): [begin, end).
  uint64_t begin = 0;
  uint64_t end = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  // Maps and validates `path`. Errors: NotFound (cannot open),
  // InvalidArgument / DataLoss (not a valid safetensors file).
  static absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Open(
      const std::string& path);
  // Validates in-memory file contents (copied), for tests and fuzzing;
  // `display_name` stands for the path in error messages.
  static absl::StatusOr<std::shared_ptr<const SafetensorsFile>> FromBytes(
      std::string display_name, std::string bytes);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Every tensor, in data-offset order.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  // The "__metadata__" map (string -> string), empty when absent.
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  // nullptr when the file has no tensor `name`.
  const SafetensorsTensorInfo* Find(absl::string_view name) const;
  // The raw bytes of `info` (which must come from this file).
  const uint8_t* Data(const SafetensorsTensorInfo& info) const {
    return data_ + info.begin;
  }

  // Tensor `name` as a weight: F32/F16/BF16 only (another dtype is an error
  // naming the tensor, its dtype and the file). A view into the mapping that
  // keeps this file alive; `data` is aligned to the element size (copied
  // into an owned buffer in the rare file whose header length leaves it
  // unaligned).
  absl::StatusOr<HostTensor> Tensor(absl::string_view name) const;
  absl::StatusOr<HostTensor> Tensor(const SafetensorsTensorInfo& info) const;

 private:
  SafetensorsFile() = default;
  // Parses and validates the mapped bytes [base_, base_ + size_).
  absl::Status Parse();

  std::string path_;
  // The whole file: a mapping (munmap'd on destruction) or owned bytes.
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::string owned_bytes_;
  // Start of the data section (base_ + 8 + header length).
  const uint8_t* data_ = nullptr;
  std::vector<SafetensorsTensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;  // name -> tensors_[i]
  std::map<std::string, std::string> metadata_;
};

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_SAFETENSORS_H_
