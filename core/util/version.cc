#include "core/util/version.h"
namespace align2 {
std::string align2_version() { return ALIGN2_VERSION; }
}  // namespace align2
