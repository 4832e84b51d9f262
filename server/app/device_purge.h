// The purge of connected-app measurements past their retention
// (interactions/devices.h), run by `espace purge` and by `espace serve` every
// --purge-interval seconds, with one AuditEvent per run that removed data.
#pragma once

#include <cstdint>

#include "espace/fhir/definitions.h"
#include "espace/fhir/status.h"
#include "espace/interactions/devices.h"
#include "espace/policy/policy.h"
#include "espace/storage/storage.h"

namespace espace::app {

// `audit` may be null (audit trail off). `store` is the unguarded storage.
fhir::Status run_device_purge(const fhir::Definitions& defs, storage::Storage& store, policy::AuditTrail* audit,
                              int64_t now_us, interactions::devices::PurgeReport* report);

}  // namespace espace::app
