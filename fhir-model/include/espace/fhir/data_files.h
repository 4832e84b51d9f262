// Where the server's own data files live (ANS profiles, French value sets,
// the habilitation matrix, the vaccination schedule, ...): the folders
// `<library>/data/` of the source tree. A deployment copies them and points
// ESPACE_DATA_DIR at the copy; the default is the source tree the binary was
// built from, so `tools/run` and the tests need no setup.
#pragma once

#include <memory>
#include <mutex>
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

// A T built from data files once per process: `build` (Status(T*)) runs at
// most once, and every call answers the same object, or the same error.
// Each call site passes its own lambda, so each has its own T.
template <typename T, typename Build>
Status load_once(Build build, const T** out) {
  static std::once_flag once;
  static std::unique_ptr<T> loaded;
  static Status status;
  std::call_once(once, [&] {
    auto built = std::make_unique<T>();
    status = build(built.get());
    if (status) loaded = std::move(built);
  });
  if (!status) return status;
  *out = loaded.get();
  return Status::ok();
}

}  // namespace espace::fhir
