// Streaming writer of one .safetensors file: the header is written first
// (the shapes are known up front), then each tensor's bytes are appended in
// the declared order, in as many pieces as the caller likes, so a file of any
// size is written with a small, constant amount of memory.
//
// The header is padded with spaces to a multiple of 8 bytes, as the reference
// writer does, so every tensor's data is 8-byte aligned in the file. The file
// is written as `path`.tmp and renamed to `path` by Finish(); an unfinished
// writer removes its temporary file.
//
// Thread-safety: not thread-safe; one writer per thread.
#ifndef ALIBI_TOOLS_MKMODEL_SAFETENSORS_WRITER_H_
#define ALIBI_TOOLS_MKMODEL_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace alibi::mkmodel {

struct TensorHeader {
  std::string name;
  std::string dtype;  // a safetensors dtype: "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
};

class SafetensorsWriter {
 public:
  // Opens `path`.tmp and writes the header for `tensors` (data in that
  // order) and `metadata` ("__metadata__", omitted when empty).
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, const std::vector<TensorHeader>& tensors,
      const std::map<std::string, std::string>& metadata);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends the next `bytes` bytes of tensor data. Error when the data would
  // exceed what the header declares.
  absl::Status Append(const void* data, size_t bytes);
  // Checks every declared byte was written, closes and renames the file.
  absl::Status Finish();

  // Bytes of a tensor: numel * dtype size. Error for an unknown dtype, a
  // negative dimension or overflow.
  static absl::StatusOr<uint64_t> TensorBytes(const TensorHeader& tensor);

 private:
  SafetensorsWriter() = default;

  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  std::unique_ptr<char[]> buffer_;  // stdio buffer
  uint64_t data_bytes_ = 0;         // declared
  uint64_t written_ = 0;            // appended so far
};

}  // namespace alibi::mkmodel

#endif  // ALIBI_TOOLS_MKMODEL_SAFETENSORS_WRITER_H_
