#include "server/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "common/status_macros.h"

namespace alibi::model {
namespace {

using json = nlohmann::json;

// The reference implementation's limit on the JSON header.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeEntry {
  SafetensorsDType dtype;
  absl::string_view name;
  int bits;
};

constexpr DTypeEntry kDTypes[] = {
    {SafetensorsDType::kBool, "BOOL", 8},
    {SafetensorsDType::kU8, "U8", 8},
    {SafetensorsDType::kI8, "I8", 8},
    {SafetensorsDType::kF8E5M2, "F8_E5M2", 8},
    {SafetensorsDType::kF8E4M3, "F8_E4M3", 8},
    {SafetensorsDType::kF8E8M0, "F8_E8M0", 8},
    {SafetensorsDType::kI16, "I16", 16},
    {SafetensorsDType::kU16, "U16", 16},
    {SafetensorsDType::kF16, "F16", 16},
    {SafetensorsDType::kBF16, "BF16", 16},
    {SafetensorsDType::kI32, "I32", 32},
    {SafetensorsDType::kU32, "U32", 32},
    {SafetensorsDType::kF32, "F32", 32},
    {SafetensorsDType::kF64, "F64", 64},
    {SafetensorsDType::kI64, "I64", 64},
    {SafetensorsDType::kU64, "U64", 64},
    {SafetensorsDType::kF4, "F4", 4},
    {SafetensorsDType::kF6E2M3, "F6_E2M3", 6},
    {SafetensorsDType::kF6E3M2, "F6_E3M2", 6},
};

std::string ErrnoString(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer to the message (maybe not `buf`).
  return std::string(strerror_r(err, buf, sizeof(buf)));
}

// Quotes a header-provided string for a message, bounded in length.
std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 128; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (s.size() > 128) out += "...";
  out += "\"";
  return out;
}

std::string Dump(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 64) s = s.substr(0, 61) + "...";
  return s;
}

// A non-negative JSON integer that fits int64 (shape dims, offsets).
bool AsNonNegative(const json& v, uint64_t& out) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer() && v.get<int64_t>() >= 0) {
      out = static_cast<uint64_t>(v.get<int64_t>());
      return true;
    }
    return false;
  }
  out = v.get<uint64_t>();
  return out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

}  // namespace

std::optional<SafetensorsDType> ParseSafetensorsDType(absl::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

absl::string_view SafetensorsDTypeName(SafetensorsDType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

int SafetensorsDTypeBits(SafetensorsDType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.bits;
  }
  return 0;
}

std::optional<kernels::DType> ToWeightDType(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kF32:
      return kernels::DType::kF32;
    case SafetensorsDType::kF16:
      return kernels::DType::kF16;
    case SafetensorsDType::kBF16:
      return kernels::DType::kBF16;
    default:
      return std::nullopt;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_ && base_ != nullptr) {
    munmap(const_cast<uint8_t*>(base_), size_);
  }
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": ", ErrnoString(err)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("cannot stat ", path, ": ", ErrnoString(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ >= 8) {
    void* p = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      close(fd);
      return absl::InternalError(
          absl::StrCat("cannot mmap ", path, ": ", ErrnoString(err)));
    }
    file->base_ = static_cast<const uint8_t*>(p);
    file->mapped_ = true;
  }
  close(fd);
  RETURN_IF_ERROR(file->Parse());
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>>
SafetensorsFile::FromBytes(std::string display_name, std::string bytes) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(display_name);
  file->owned_bytes_ = std::move(bytes);
  file->base_ = reinterpret_cast<const uint8_t*>(file->owned_bytes_.data());
  file->size_ = file->owned_bytes_.size();
  RETURN_IF_ERROR(file->Parse());
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

absl::Status SafetensorsFile::Parse() {
  auto invalid = [this](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", message));
  };
  auto tensor_error = [this](absl::string_view name,
                             absl::string_view message) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": tensor ", Quote(name), ": ", message));
  };

  if (size_ < 8) {
    return absl::DataLossError(
        absl::StrCat(path_, ": ", size_,
                     " bytes, too short for a safetensors file (truncated?)"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base_[i];
  if (header_len > kMaxHeaderBytes) {
    return invalid(absl::StrCat("header length ", header_len,
                                " exceeds the limit of ", kMaxHeaderBytes,
                                " bytes (not a safetensors file?)"));
  }
  if (header_len > size_ - 8) {
    return absl::DataLossError(absl::StrCat(
        path_, ": header length ", header_len, " runs past the end of the ",
        size_, "-byte file (truncated?)"));
  }
  const char* header = reinterpret_cast<const char*>(base_ + 8);
  data_ = base_ + 8 + header_len;
  const uint64_t data_size = size_ - 8 - header_len;

  // Parse, rejecting duplicate keys in any object (nlohmann would silently
  // keep the last one). The parser and this callback are iterative, so deep
  // nesting cannot overflow the stack.
  std::vector<absl::flat_hash_set<std::string>> key_stack;
  std::string duplicate;
  json::parser_callback_t callback =
      [&](int /*depth*/, json::parse_event_t event, json& parsed) {
        switch (event) {
          case json::parse_event_t::object_start:
            key_stack.emplace_back();
            break;
          case json::parse_event_t::object_end:
            if (!key_stack.empty()) key_stack.pop_back();
            break;
          case json::parse_event_t::key:
            if (!key_stack.empty() && parsed.is_string() && duplicate.empty() &&
                !key_stack.back()
                     .insert(parsed.get_ref<const std::string&>())
                     .second) {
              duplicate = parsed.get_ref<const std::string&>();
            }
            break;
          default:
            break;
        }
        return true;
      };
  json j;
  try {
    j = json::parse(header, header + header_len, callback,
                    /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    return invalid(absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (j.is_discarded()) return invalid("header is not valid JSON");
  if (!duplicate.empty()) {
    return invalid(absl::StrCat("header has duplicate key ", Quote(duplicate),
                                " (a tensor name or field given twice)"));
  }
  if (!j.is_object()) {
    return invalid(
        absl::StrCat("header must be a JSON object, got ", j.type_name()));
  }

  tensors_.clear();
  tensors_.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) {
        return invalid(absl::StrCat("__metadata__ must be an object, got ",
                                    value.type_name()));
      }
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) {
          return invalid(absl::StrCat("__metadata__ value for ", Quote(m.key()),
                                      " must be a string, got ",
                                      Dump(m.value())));
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) {
      return tensor_error(
          name, absl::StrCat("entry must be an object, got ", Dump(value)));
    }
    SafetensorsTensorInfo info;
    info.name = name;

    auto dtype_it = value.find("dtype");
    if (dtype_it == value.end() || !dtype_it->is_string()) {
      return tensor_error(name, "missing or non-string \"dtype\"");
    }
    const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
    std::optional<SafetensorsDType> dtype = ParseSafetensorsDType(dtype_name);
    if (!dtype.has_value()) {
      return tensor_error(name,
                          absl::StrCat("unknown dtype ", Quote(dtype_name)));
    }
    info.dtype = *dtype;

    auto shape_it = value.find("shape");
    if (shape_it == value.end() || !shape_it->is_array()) {
      return tensor_error(name, "missing or non-list \"shape\"");
    }
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& dim : *shape_it) {
      uint64_t d = 0;
      if (!AsNonNegative(dim, d)) {
        return tensor_error(
            name, absl::StrCat("shape ", Dump(*shape_it),
                               ": dimensions must be non-negative integers"));
      }
      info.shape.push_back(static_cast<int64_t>(d));
      if (__builtin_mul_overflow(numel, d, &numel)) overflow = true;
    }
    const uint64_t bits = static_cast<uint64_t>(SafetensorsDTypeBits(*dtype));
    uint64_t total_bits = 0;
    if (overflow ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(numel, bits, &total_bits)) {
      return tensor_error(
          name, absl::StrCat("shape ", Dump(*shape_it), " is too large"));
    }
    if (total_bits % 8 != 0) {
      return tensor_error(
          name, absl::StrCat("shape ", Dump(*shape_it), " of ", dtype_name,
                             " is not a whole number of bytes"));
    }
    const uint64_t nbytes = total_bits / 8;

    auto off_it = value.find("data_offsets");
    if (off_it == value.end() || !off_it->is_array() || off_it->size() != 2 ||
        !AsNonNegative((*off_it)[0], info.begin) ||
        !AsNonNegative((*off_it)[1], info.end)) {
      return tensor_error(
          name,
          "\"data_offsets\" must be two non-negative integers [begin, "
          "end]");
    }
    if (info.end < info.begin) {
      return tensor_error(name, absl::StrCat("data_offsets [", info.begin, ", ",
                                             info.end, "]: end before begin"));
    }
    if (info.end > data_size) {
      return absl::DataLossError(
          absl::StrCat(path_, ": tensor ", Quote(name), ": data_offsets [",
                       info.begin, ", ", info.end, "] run past the end of the ",
                       data_size, "-byte data section (truncated?)"));
    }
    if (info.end - info.begin != nbytes) {
      return tensor_error(
          name,
          absl::StrCat("data_offsets [", info.begin, ", ", info.end, "] hold ",
                       info.end - info.begin, " bytes, but shape ",
                       Dump(*shape_it), " of ", dtype_name, " needs ", nbytes));
    }
    tensors_.push_back(std::move(info));
  }

  // Offsets: sorted, no overlap, no gap, the data section exactly covered.
  std::sort(tensors_.begin(), tensors_.end(),
            [](const SafetensorsTensorInfo& a, const SafetensorsTensorInfo& b) {
              if (a.begin != b.begin) return a.begin < b.begin;
              if (a.end != b.end) return a.end < b.end;
              return a.name < b.name;
            });
  uint64_t expected = 0;
  const SafetensorsTensorInfo* previous = nullptr;
  for (const SafetensorsTensorInfo& t : tensors_) {
    if (t.begin < expected) {
      return tensor_error(
          t.name, absl::StrCat("data_offsets [", t.begin, ", ", t.end,
                               "] overlap tensor ", Quote(previous->name), " [",
                               previous->begin, ", ", previous->end, "]"));
    }
    if (t.begin > expected) {
      return tensor_error(t.name,
                          absl::StrCat("data_offsets [", t.begin, ", ", t.end,
                                       "] leave a gap of ", t.begin - expected,
                                       " bytes before them"));
    }
    expected = t.end;
    previous = &t;
  }
  if (expected != data_size) {
    return invalid(absl::StrCat("tensors cover ", expected,
                                " bytes but the "
                                "data section has ",
                                data_size, " (trailing bytes)"));
  }
  index_.clear();
  index_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    index_.emplace(tensors_[i].name, i);
  }
  return absl::OkStatus();
}

const SafetensorsTensorInfo* SafetensorsFile::Find(
    absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<HostTensor> SafetensorsFile::Tensor(
    absl::string_view name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path_, ": no tensor ", Quote(name)));
  }
  return Tensor(*info);
}

absl::StatusOr<HostTensor> SafetensorsFile::Tensor(
    const SafetensorsTensorInfo& info) const {
  std::optional<kernels::DType> dtype = ToWeightDType(info.dtype);
  if (!dtype.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", info.name, " has dtype ", SafetensorsDTypeName(info.dtype),
        ": only F32, F16 and BF16 tensors can be weights (in ", path_, ")"));
  }
  HostTensor t;
  t.name = info.name;
  t.dtype = *dtype;
  t.shape = info.shape;
  const uint8_t* bytes = Data(info);
  const size_t element = kernels::DTypeSize(*dtype);
  if (reinterpret_cast<uintptr_t>(bytes) % element == 0) {
    t.data = bytes;
    t.owner = shared_from_this();
  } else {
    // Only a header length that is not a multiple of the element size gets
    // here (the reference writer pads the header to 8 bytes).
    const size_t n = static_cast<size_t>(info.end - info.begin);
    std::shared_ptr<uint8_t[]> copy(new uint8_t[n > 0 ? n : 1]);
    std::memcpy(copy.get(), bytes, n);
    t.data = copy.get();
    t.owner = std::shared_ptr<const void>(copy, copy.get());
  }
  return t;
}

}  // namespace alibi::model
