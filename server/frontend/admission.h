// The gate every transport admits calls through: whether the model is
// loaded (the frontend is set), whether the server drains, and how many
// admitted calls are still in flight (for the drain's wait).
//
// Thread-safety: every method is thread-safe.
#ifndef ALIBI_SERVER_FRONTEND_ADMISSION_H_
#define ALIBI_SERVER_FRONTEND_ADMISSION_H_

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/frontend/frontend.h"

namespace alibi::frontend {

// Whether `frontend`'s engine finished no step for `stall_timeout` with work
// pending (a long step that keeps issuing work is progress, not a stall).
bool EngineStalled(Frontend& frontend, absl::Duration stall_timeout);

class Admission {
 public:
  // The model is loaded: admit calls to `frontend` (which must outlive
  // every admitted call).
  void SetFrontend(Frontend* frontend) { frontend_.store(frontend); }
  // New calls are refused from now on; calls in flight continue.
    void StartDraining() { draining_.store(true); }
  // The frontend; null while the model loads.
  Frontend* frontend() const { return frontend_.load(); }

  // The frontend, with the call counted in flight until Exit(); or
  // UNAVAILABLE saying why (loading, shutting down).
  absl::StatusOr<Frontend*> Enter();
  // An admitted call is over.
  void Exit();
  // Waits until no call is in flight or `timeout` passes; true when idle.
  bool WaitForIdle(absl::Duration timeout);
  int in_flight() const;

  // OK while serving; else UNAVAILABLE saying why: loading, draining, or
  // an engine that finished no step for `stall_timeout` with work pending
  // (a long step is progress, a stall is not).
  absl::Status Health(absl::Duration stall_timeout) const;

 private:
  std::atomic<Frontend*> frontend_{nullptr};
  std::atomic<bool> draining_{false};
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  int in_flight_ = 0;
};

}  // namespace alibi::frontend

#endif  // ALIBI_SERVER_FRONTEND_ADMISSION_H_
