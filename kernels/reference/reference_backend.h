// The reference backend ("ref"): fp32 everywhere (weights, activations, KV),
// OpenBLAS for the matrix products, plain readable loops (attention
// accumulating in double) for everything else. It is the numerical oracle
// every other backend is tested against
// (tests/kernels/backend_conformance_test.cc), and is never optimised.
//
// Batch invariance: each output row of Linear depends only on its input row.
// OpenBLAS's sgemm does not guarantee that across different M (its kernels
// round differently at different tile positions), so Linear always calls
// sgemm on row tiles of one fixed height (zero-padded), single-threaded per
// call, and parallelises over tiles itself. The tile height is the largest of
// 16, 8, 4, 2 for which a start-up probe finds sgemm's rows independent of
// their position in the tile, else 1 (invariant by construction).
//
// Thread-safety: not thread-safe (see kernels/backend.h).
#ifndef ALIBI_KERNELS_REFERENCE_REFERENCE_BACKEND_H_
#define ALIBI_KERNELS_REFERENCE_REFERENCE_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace alibi::kernels::reference {

// num_threads 0: every core.
absl::StatusOr<std::unique_ptr<Backend>> CreateReferenceBackend(
    int num_threads);

// The row-tile height Linear uses on this machine (probed once per process).
int LinearRowTile();

}  // namespace alibi::kernels::reference

#endif  // ALIBI_KERNELS_REFERENCE_REFERENCE_BACKEND_H_
