#include "tools/mkmodel/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "common/status_macros.h"
#include "server/model/safetensors.h"

namespace alibi::mkmodel {
namespace {

constexpr size_t kStdioBuffer = 4 << 20;

std::string ErrnoString(int err) {
  char buf[256];
  return std::string(strerror_r(err, buf, sizeof(buf)));
}

}  // namespace

absl::StatusOr<uint64_t> SafetensorsWriter::TensorBytes(
    const TensorHeader& tensor) {
  std::optional<model::SafetensorsDType> dtype =
      model::ParseSafetensorsDType(tensor.dtype);
  if (!dtype.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", tensor.name, ": unknown dtype \"", tensor.dtype, "\""));
  }
  uint64_t bits = static_cast<uint64_t>(model::SafetensorsDTypeBits(*dtype));
  for (int64_t d : tensor.shape) {
    if (d < 0 ||
        __builtin_mul_overflow(bits, static_cast<uint64_t>(d), &bits)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", tensor.name, ": bad or too large shape"));
    }
  }
  if (bits % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", tensor.name, ": not a whole number of bytes"));
  }
  return bits / 8;
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, const std::vector<TensorHeader>& tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorHeader& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": duplicate or reserved tensor name ", t.name));
    }
    ASSIGN_OR_RETURN(uint64_t bytes, TensorBytes(t));
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - (text.size() % 8)) % 8, ' ');

  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter());
  writer->path_ = path;
  writer->tmp_path_ = path + ".tmp";
  writer->data_bytes_ = offset;
  writer->file_ = std::fopen(writer->tmp_path_.c_str(), "wb");
  if (writer->file_ == nullptr) {
    const int err = errno;
    return absl::InternalError(absl::StrCat("cannot create ", writer->tmp_path_,
                                            ": ", ErrnoString(err)));
  }
  writer->buffer_.reset(new char[kStdioBuffer]);
  std::setvbuf(writer->file_, writer->buffer_.get(), _IOFBF, kStdioBuffer);
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  if (std::fwrite(len, 1, 8, writer->file_) != 8 ||
      std::fwrite(text.data(), 1, text.size(), writer->file_) != text.size()) {
    const int err = errno;
    return absl::InternalError(absl::StrCat("cannot write ", writer->tmp_path_,
                                            ": ", ErrnoString(err)));
  }
  return writer;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

absl::Status SafetensorsWriter::Append(const void* data, size_t bytes) {
  if (file_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": Append after Finish"));
  }
  if (bytes > data_bytes_ - written_) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": more data than the header declares"));
  }
  if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes) {
    const int err = errno;
    return absl::InternalError(
        absl::StrCat("cannot write ", tmp_path_, ": ", ErrnoString(err)));
  }
  written_ += bytes;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  if (file_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": Finish called twice"));
  }
  if (written_ != data_bytes_) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": ", written_, " of ", data_bytes_, " data bytes written"));
  }
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) {
    const int err = errno;
    std::remove(tmp_path_.c_str());
    return absl::InternalError(
        absl::StrCat("cannot write ", tmp_path_, ": ", ErrnoString(err)));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp_path_.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp_path_, " to ",
                                            path_, ": ", ErrnoString(err)));
  }
  return absl::OkStatus();
}

}  // namespace alibi::mkmodel
