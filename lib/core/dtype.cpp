#include "core/dtype.hpp"

namespace weft {

std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

}  // namespace weft
