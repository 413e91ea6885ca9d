#include "server/model/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <exception>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace alibi::model {
namespace {

using json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr std::streamoff kMaxIndexBytes = 64 << 20;

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          std::streamoff limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || size > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unreadable or larger than ", limit, " bytes"));
  }
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<size_t>(size), '\0');
  if (!in.read(text.data(), size)) {
    return absl::DataLossError(absl::StrCat("cannot read ", path));
  }
  return text;
}

// A shard path from the index must stay inside the model directory.
bool SafeRelativePath(absl::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == ".." || part.empty()) return false;
  }
  return true;
}

// weight_map (tensor name -> shard file) of the index file.
absl::StatusOr<std::map<std::string, std::string>> ParseIndex(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxIndexBytes));
  auto invalid = [&path](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
  };
  try {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return invalid("not valid JSON");
    if (!j.is_object()) return invalid("must be a JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) {
      return invalid("missing \"weight_map\" object");
    }
    if (wm->empty()) return invalid("\"weight_map\" is empty");
    std::map<std::string, std::string> result;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) {
        return invalid(absl::StrCat("weight_map[\"", it.key(),
                                    "\"] must be a file name string"));
      }
      const std::string& file = it.value().get_ref<const std::string&>();
      if (!SafeRelativePath(file)) {
        return invalid(absl::StrCat("weight_map[\"", it.key(), "\"] = \"", file,
                                    "\" is not a file inside the model "
                                    "directory"));
      }
      result.emplace(it.key(), file);
    }
    return result;
  } catch (const std::exception& e) {
    return invalid(absl::StrCat("malformed: ", e.what()));
  }
}

}  // namespace

absl::string_view StripCheckpointPrefix(absl::string_view name) {
  if (absl::StartsWith(name, Checkpoint::kPrefix)) {
    name.remove_prefix(Checkpoint::kPrefix.size());
  }
  return name;
}

absl::Status Checkpoint::Add(size_t file_index,
                             const SafetensorsTensorInfo& info) {
  std::string key(StripCheckpointPrefix(info.name));
  auto [it, inserted] =
      by_name_.emplace(std::move(key), std::make_pair(file_index, &info));
  if (!inserted) {
    const auto& [other_file, other_info] = it->second;
    return absl::InvalidArgumentError(
        absl::StrCat(dir_, ": tensor ", info.name, " (",
                     files_[file_index]->path(), ") is stored twice: also as ",
                     other_info->name, " (", files_[other_file]->path(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::FromFiles(
    std::string model_dir,
    std::vector<std::shared_ptr<const SafetensorsFile>> files) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->dir_ = std::move(model_dir);
  checkpoint->files_ = std::move(files);
  for (size_t f = 0; f < checkpoint->files_.size(); ++f) {
    for (const SafetensorsTensorInfo& info : checkpoint->files_[f]->tensors()) {
      RETURN_IF_ERROR(checkpoint->Add(f, info));
    }
  }
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(
    const std::string& model_dir) {
  const std::string single = absl::StrCat(model_dir, "/", kSingleFile);
  if (IsRegularFile(single)) {
    ASSIGN_OR_RETURN(std::shared_ptr<const SafetensorsFile> file,
                     SafetensorsFile::Open(single));
    return FromFiles(model_dir, {std::move(file)});
  }
  const std::string index_path = absl::StrCat(model_dir, "/", kIndexFile);
  if (!IsRegularFile(index_path)) {
    std::string hint;
    if (IsRegularFile(absl::StrCat(model_dir, "/pytorch_model.bin")) ||
        IsRegularFile(
            absl::StrCat(model_dir, "/pytorch_model.bin.index.json"))) {
      hint =
          " (pytorch_model.bin checkpoints are not supported: convert "
          "them to safetensors)";
    }
    return absl::NotFoundError(absl::StrCat(model_dir, ": neither ",
                                            kSingleFile, " nor ", kIndexFile,
                                            " found", hint));
  }
  ASSIGN_OR_RETURN(auto weight_map, ParseIndex(index_path));

  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->dir_ = model_dir;
  std::map<std::string, size_t> file_index;  // shard name -> files_ index
  for (const auto& [tensor, shard] : weight_map) {
    if (file_index.count(shard) > 0) continue;
    ASSIGN_OR_RETURN(
        std::shared_ptr<const SafetensorsFile> file,
        SafetensorsFile::Open(absl::StrCat(model_dir, "/", shard)));
    file_index.emplace(shard, checkpoint->files_.size());
    checkpoint->files_.push_back(std::move(file));
  }
  // Only what the index lists is part of the model (as in transformers).
  for (const auto& [tensor, shard] : weight_map) {
    const size_t f = file_index.at(shard);
    const SafetensorsTensorInfo* info = checkpoint->files_[f]->Find(tensor);
    if (info == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map puts tensor ", tensor, " in ",
                       shard, ", which has no such tensor"));
    }
    RETURN_IF_ERROR(checkpoint->Add(f, *info));
  }
  return checkpoint;
}

Checkpoint::Entry Checkpoint::Find(absl::string_view name) const {
  auto it = by_name_.find(StripCheckpointPrefix(name));
  if (it == by_name_.end()) return Entry{};
  return Entry{files_[it->second.first].get(), it->second.second};
}

absl::StatusOr<HostTensor> Checkpoint::Tensor(absl::string_view name) const {
  Entry entry = Find(name);
  if (entry.file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("missing tensor ", StripCheckpointPrefix(name),
                     " (with or without \"", kPrefix, "\") in ", dir_));
  }
  return entry.file->Tensor(*entry.info);
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(by_name_.size());
  for (const auto& [name, where] : by_name_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<kernels::DType> Checkpoint::StoredWeightDType() const {
  int64_t f32 = 0, f16 = 0, bf16 = 0;
  for (const auto& [name, where] : by_name_) {
    const SafetensorsTensorInfo& info = *where.second;
    switch (info.dtype) {
      case SafetensorsDType::kF32:
        f32 += info.numel();
        break;
      case SafetensorsDType::kF16:
        f16 += info.numel();
        break;
      case SafetensorsDType::kBF16:
        bf16 += info.numel();
        break;
      default:
        break;
    }
  }
  if (f32 + f16 + bf16 == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir_, ": no F32, F16 or BF16 tensors"));
  }
  if (f32 >= f16 && f32 >= bf16) return kernels::DType::kF32;
  return f16 >= bf16 ? kernels::DType::kF16 : kernels::DType::kBF16;
}

}  // namespace alibi::model
