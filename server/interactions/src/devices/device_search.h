// Searches of the devices code against a storage (guarded or not), every page.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/status.h"
#include "espace/storage/storage.h"

namespace espace::interactions::devices {

// Bound on what one search may collect: more is an error, never a silent cut.
inline constexpr size_t kMaxCollected = 100000;

fhir::Status search_all(storage::Storage& store, const fhir::Definitions& defs, const std::string& type,
                        const std::vector<std::pair<std::string, std::string>>& params,
                        std::vector<storage::ResourceVersion>* out);

}  // namespace espace::interactions::devices
