#include "espace/fhir/data_files.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace espace::fhir {

std::string data_root() {
  if (const char* env = std::getenv("ESPACE_DATA_DIR"); env && *env) return env;
  return ESPACE_DEFAULT_DATA_DIR;
}

std::string data_path(std::string_view relative) { return data_root() + "/" + std::string(relative); }

Status read_data_file(std::string_view relative, std::string* out) {
  std::string path = data_path(relative);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(ErrorCategory::NotFound, "not-found",
                         "data file " + path + " is missing (set ESPACE_DATA_DIR to the folder holding it)");
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return Status::ok();
}

}  // namespace espace::fhir
