#pragma once
#include <string>
namespace align2 {
// "0.1.0+<git short rev>" of the build.
std::string align2_version();
}  // namespace align2
