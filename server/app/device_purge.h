// The purge of connected-app measurements past their retention
// (interactions/devices.h), run by `espace purge` and by `espace serve` every
// --purge-interval seconds, with one AuditEvent per run that removed data.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "espace/fhir/definitions.h"
#include "espace/fhir/status.h"
#include "espace/interactions/devices.h"
#include "espace/policy/policy.h"
#include "espace/storage/storage.h"

namespace espace::app {

// `audit` may be null (audit trail off). `store` is the unguarded storage.
fhir::Status run_device_purge(const fhir::Definitions& defs, storage::Storage& store, policy::AuditTrail* audit,
                              int64_t now_us, interactions::devices::PurgeReport* report);

// Runs run_device_purge every `interval_seconds` (first run at start) on its
// own thread until stop(). Failures are reported on stderr and retried at the
// next run; nothing about patients is logged, only counts.
class DevicePurgeTimer {
 public:
  DevicePurgeTimer(const fhir::Definitions& defs, storage::Storage& store, policy::AuditTrail* audit,
                   int64_t interval_seconds);
  ~DevicePurgeTimer();  // stop()
  void start();
  void stop();

 private:
  void loop();
  const fhir::Definitions& defs_;
  storage::Storage& store_;
  policy::AuditTrail* audit_;
  int64_t interval_seconds_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace espace::app
