// Where the server's own data files live (ANS profiles, French value sets,
// the habilitation matrix, the vaccination schedule, ...): the folders
// `<library>/data/` of the source tree. A deployment copies them and points
// ESPACE_DATA_DIR at the copy; the default is the source tree the binary was
// built from, so `tools/run` and the tests need no setup.
#pragma once

#include <string>
#include <string_view>

#include "espace/fhir/status.h"

namespace espace::fhir {

// The root folder: $ESPACE_DATA_DIR, else the source tree of this build.
std::string data_root();

// data_root() + "/" + relative, e.g. data_path("server/policy/data/habilitations.json").
std::string data_path(std::string_view relative);

// Reads a data file whole; NotFound naming the path when it is missing.
Status read_data_file(std::string_view relative, std::string* out);

}  // namespace espace::fhir
