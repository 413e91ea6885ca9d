#include "server/rpc/wire.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/utf8.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/stubs/logging.h"

namespace alibi::rpc {
namespace {

namespace pb = google::protobuf;

void StringsToBytes(pb::DescriptorProto* message) {
  for (pb::FieldDescriptorProto& field : *message->mutable_field()) {
    if (field.type() == pb::FieldDescriptorProto::TYPE_STRING) {
      field.set_type(pb::FieldDescriptorProto::TYPE_BYTES);
    }
  }
  for (pb::DescriptorProto& nested : *message->mutable_nested_type()) {
    StringsToBytes(&nested);
  }
}

// The generated message types again, in a pool of their own, with every
// string field as bytes: these parse whatever a string field holds.
class LenientTypes {
 public:
  static LenientTypes& Get() {
    static LenientTypes* types = new LenientTypes;
    return *types;
  }

  // The lenient twin of `type`, or null.
  const pb::Message* Prototype(const pb::Descriptor* type) {
    absl::MutexLock lock(&mu_);
    if (!Add(type->file())) return nullptr;
    const pb::Descriptor* twin = pool_.FindMessageTypeByName(type->full_name());
    return twin == nullptr ? nullptr : factory_.GetPrototype(twin);
  }

 private:
  bool Add(const pb::FileDescriptor* file) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pool_.FindFileByName(file->name()) != nullptr) return true;
    for (int i = 0; i < file->dependency_count(); ++i) {
      if (!Add(file->dependency(i))) return false;
    }
    pb::FileDescriptorProto proto;
    file->CopyTo(&proto);
    for (pb::DescriptorProto& message : *proto.mutable_message_type()) {
      StringsToBytes(&message);
    }
    return pool_.BuildFile(proto) != nullptr;
  }

  absl::Mutex mu_;
  pb::DescriptorPool pool_ ABSL_GUARDED_BY(mu_);
  pb::DynamicMessageFactory factory_{&pool_};  // guarded by mu_
};

// The path of the first string field of `original` type whose value in
// `lenient` is not valid UTF-8 ("params.sampling.stop[1]").
std::optional<std::string> FindInvalidUtf8(const pb::Message& lenient,
                                           const pb::Descriptor* original,
                                           const std::string& prefix) {
  const pb::Reflection* r = lenient.GetReflection();
  const pb::Descriptor* twin = lenient.GetDescriptor();
  for (int i = 0; i < original->field_count(); ++i) {
    const pb::FieldDescriptor* field = original->field(i);
    const pb::FieldDescriptor* lf = twin->FindFieldByNumber(field->number());
    if (lf == nullptr) continue;
    const std::string path = absl::StrCat(prefix, field->name());
    if (field->type() == pb::FieldDescriptor::TYPE_STRING) {
      if (field->is_repeated()) {
        for (int k = 0; k < r->FieldSize(lenient, lf); ++k) {
          if (!IsValidUtf8(r->GetRepeatedString(lenient, lf, k))) {
            return absl::StrCat(path, "[", k, "]");
          }
        }
      } else if (!IsValidUtf8(r->GetString(lenient, lf))) {
        return path;
      }
    } else if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int k = 0; k < r->FieldSize(lenient, lf); ++k) {
          if (auto bad = FindInvalidUtf8(r->GetRepeatedMessage(lenient, lf, k),
                                         field->message_type(),
                                         absl::StrCat(path, "[", k, "]."))) {
            return bad;
          }
        }
      } else if (r->HasField(lenient, lf)) {
        if (auto bad = FindInvalidUtf8(r->GetMessage(lenient, lf),
                                       field->message_type(), path + ".")) {
          return bad;
        }
      }
    }
  }
  return std::nullopt;
}

void FilteredLog(pb::LogLevel level, const char* filename, int line,
                 const std::string& message) {
  if (absl::StrContains(message, "invalid UTF-8")) return;
  switch (level) {
    case pb::LOGLEVEL_INFO:
      ALIBI_LOG(DEBUG) << "protobuf " << filename << ":" << line << "] "
                       << message;
      break;
    case pb::LOGLEVEL_WARNING:
      ALIBI_LOG(WARNING) << "protobuf " << filename << ":" << line << "] "
                         << message;
      break;
    default:
      ALIBI_LOG(ERROR) << "protobuf " << filename << ":" << line << "] "
                       << message;
      break;
  }
}

}  // namespace

absl::Status ParseRequest(const grpc::ByteBuffer& buffer, pb::Message* out) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) {
    return absl::InvalidArgumentError("request: cannot read the message");
  }
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  if (out->ParseFromString(bytes)) return absl::OkStatus();
  const pb::Descriptor* type = out->GetDescriptor();
  const pb::Message* prototype = LenientTypes::Get().Prototype(type);
  if (prototype != nullptr) {
    std::unique_ptr<pb::Message> lenient(prototype->New());
    if (lenient->ParseFromString(bytes)) {
      if (auto bad = FindInvalidUtf8(*lenient, type, "")) {
        return absl::InvalidArgumentError(
            absl::StrCat(*bad, ": is not valid UTF-8"));
      }
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("request: ", bytes.size(), " bytes that are not a valid ",
                   type->full_name(), " message"));
}

void SerializeResponse(const pb::Message& message, grpc::ByteBuffer* out) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  *out = grpc::ByteBuffer(&slice, 1);
}

void InstallProtobufLogFilter() { pb::SetLogHandler(&FilteredLog); }

}  // namespace alibi::rpc
