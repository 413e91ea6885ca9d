#include "kernels/cpu/packing.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/half.h"

namespace alibi::kernels::cpu {
namespace {

float SourceValue(const void* src, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::kF16:
      return Fp16ToFloat(static_cast<const uint16_t*>(src)[index]);
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(src)[index]);
    default:
      return static_cast<const float*>(src)[index];
  }
}

// One panel's columns as float32: [kPanel][k], zero past n.
void PanelColumns(const void* src, DType dtype, int64_t n, int64_t k,
                  int64_t panel, float* cols) {
  for (int j = 0; j < kPanel; ++j) {
    const int64_t row = panel * kPanel + j;
    float* out = cols + j * k;
    if (row >= n) {
      std::fill(out, out + k, 0.0f);
      continue;
    }
    for (int64_t kk = 0; kk < k; ++kk)
      out[kk] = SourceValue(src, dtype, row * k + kk);
  }
}

void PackInt8Panel(const float* cols, int64_t k, uint8_t* dst) {
  const int64_t groups = (k + kGroup - 1) / kGroup;
  for (int64_t g = 0; g < groups; ++g) {
    uint8_t* block = dst + g * kGroupBytes;
    uint16_t* scales = reinterpret_cast<uint16_t*>(block + 8 * kPanel * 4);
    for (int j = 0; j < kPanel; ++j) {
      const float* x = cols + j * k + g * kGroup;
      const int valid =
          static_cast<int>(std::min<int64_t>(kGroup, k - g * kGroup));
      float amax = 0.0f;
      for (int i = 0; i < valid; ++i) amax = std::max(amax, std::fabs(x[i]));
      const uint16_t scale16 = FloatToFp16(std::min(amax / 127.0f, 65504.0f));
      const float scale = Fp16ToFloat(scale16);
      scales[j] = scale16;
      for (int i = 0; i < kGroup; ++i) {
        int q = 0;
        if (i < valid && scale > 0.0f) {
          q = static_cast<int>(std::nearbyint(x[i] / scale));
          q = std::clamp(q, -127, 127);
        }
        block[(i / 4) * kPanel * 4 + j * 4 + i % 4] =
            static_cast<uint8_t>(q + 128);
      }
    }
  }
}

}  // namespace

int64_t PanelBytes(int format, int64_t k) {
  switch (format) {
    case kWF16:
      return k * kPanel * 2;
    case kWBF16:
      return (k + 1) / 2 * kPanel * 4;
    case kWI8:
      return (k + kGroup - 1) / kGroup * kGroupBytes;
    default:
      return k * kPanel * 4;
  }
}

absl::StatusOr<int> WeightFormatOf(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return kWF32;
    case DType::kF16:
      return kWF16;
    case DType::kBF16:
      return kWBF16;
    case DType::kI8:
      return kWI8;
    case DType::kI32:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cpu backend: weights cannot be stored as ",
                   DTypeName(dtype), " (float32, bfloat16, float16 or int8)"));
}

int64_t PackedWeightBytes(int format, int64_t n, int64_t k) {
  return (n + kPanel - 1) / kPanel * PanelBytes(format, k);
}

void PackWeightPanels(const void* src, DType src_dtype, int64_t n, int64_t k,
                      int format, int64_t panel_begin, int64_t panel_end,
                      uint8_t* dst) {
  const int64_t panel_bytes = PanelBytes(format, k);
  std::vector<float> cols(static_cast<size_t>(kPanel * k));
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    PanelColumns(src, src_dtype, n, k, panel, cols.data());
    uint8_t* out = dst + panel * panel_bytes;
    switch (format) {
      case kWF32: {
        float* o = reinterpret_cast<float*>(out);
        for (int j = 0; j < kPanel; ++j) {
          for (int64_t kk = 0; kk < k; ++kk)
            o[kk * kPanel + j] = cols[j * k + kk];
        }
        break;
      }
      case kWF16: {
        uint16_t* o = reinterpret_cast<uint16_t*>(out);
        for (int j = 0; j < kPanel; ++j) {
          for (int64_t kk = 0; kk < k; ++kk) {
            o[kk * kPanel + j] = FloatToFp16(cols[j * k + kk]);
          }
        }
        break;
      }
      case kWBF16: {
        uint32_t* o = reinterpret_cast<uint32_t*>(out);
        const int64_t pairs = (k + 1) / 2;
        for (int j = 0; j < kPanel; ++j) {
          for (int64_t kp = 0; kp < pairs; ++kp) {
            const uint32_t even = FloatToBf16(cols[j * k + 2 * kp]);
            const uint32_t odd =
                2 * kp + 1 < k ? FloatToBf16(cols[j * k + 2 * kp + 1]) : 0u;
            o[kp * kPanel + j] = even | odd << 16;
          }
        }
        break;
      }
      default:
        PackInt8Panel(cols.data(), k, out);
        break;
    }
  }
}

void UnpackWeightRow(const uint8_t* packed, int format, int64_t k, int64_t row,
                     float* dst) {
  const uint8_t* panel = packed + row / kPanel * PanelBytes(format, k);
  const int j = static_cast<int>(row % kPanel);
  for (int64_t kk = 0; kk < k; ++kk) {
    switch (format) {
      case kWF32:
        dst[kk] = reinterpret_cast<const float*>(panel)[kk * kPanel + j];
        break;
      case kWF16:
        dst[kk] = Fp16ToFloat(
            reinterpret_cast<const uint16_t*>(panel)[kk * kPanel + j]);
        break;
      case kWBF16: {
        const uint32_t word =
            reinterpret_cast<const uint32_t*>(panel)[kk / 2 * kPanel + j];
        dst[kk] =
            Bf16ToFloat(static_cast<uint16_t>(kk % 2 ? word >> 16 : word));
        break;
      }
      default: {
        const uint8_t* block = panel + kk / kGroup * kGroupBytes;
        const int i = static_cast<int>(kk % kGroup);
        const int q = block[(i / 4) * kPanel * 4 + j * 4 + i % 4] - 128;
        const float scale = Fp16ToFloat(
            reinterpret_cast<const uint16_t*>(block + 8 * kPanel * 4)[j]);
        dst[kk] = static_cast<float>(q) * scale;
        break;
      }
    }
  }
}

}  // namespace alibi::kernels::cpu
