#include "server/frontend/admission.h"

#include "absl/strings/str_cat.h"
#include "common/clock.h"

namespace alibi::frontend {

bool EngineStalled(Frontend& frontend, absl::Duration stall_timeout) {
  const engine::EngineSnapshot s = frontend.engine().GetSnapshot();
  return s.has_work &&
         Now() - s.last_progress > absl::ToChronoNanoseconds(stall_timeout);
}

absl::StatusOr<Frontend*> Admission::Enter() {
  if (draining_.load()) {
    return absl::UnavailableError("the server is shutting down");
  }
  Frontend* frontend = frontend_.load();
  if (frontend == nullptr) {
    return absl::UnavailableError("the model is still loading");
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++in_flight_;
  return frontend;
}

void Admission::Exit() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

bool Admission::WaitForIdle(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [this] { return in_flight_ == 0; });
}

int Admission::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

absl::Status Admission::Health(absl::Duration stall_timeout) const {
  Frontend* frontend = frontend_.load();
  if (frontend == nullptr) {
    return absl::UnavailableError("the model is still loading");
  }
  if (draining_.load()) {
    return absl::UnavailableError("the server is shutting down");
  }
    if (EngineStalled(*frontend, stall_timeout)) {
    return absl::UnavailableError(
        absl::StrCat("the engine made no progress for ",
                     absl::FormatDuration(stall_timeout), " with work pending"));
  }
  return absl::OkStatus();
}

}  // namespace alibi::frontend
