#include "device_purge.h"

#include <chrono>
#include <cstdio>

namespace espace::app {

fhir::Status run_device_purge(const fhir::Definitions& defs, storage::Storage& store, policy::AuditTrail* audit,
                              int64_t now_us, interactions::devices::PurgeReport* report) {
  interactions::Services services;
  services.defs = &defs;
  services.store = &store;
  fhir::Status status = interactions::devices::purge_device_data(services, now_us, report);
  // What was removed is recorded even when a later removal failed.
  if (audit && !report->removed.empty()) {
    policy::Caller server;
    server.authenticated = true;
    server.role = policy::Role::System;
    server.subject = "espace-device-purge";
    server.client_id = "espace-device-purge";
    server.display_name = "espace: purge of connected-device data past its retention";
    interactions::FhirRequest request;
    request.interaction = interactions::Interaction::Operation;
    request.operation = "purge-device-data";
    request.method = "DELETE";
    // Two events: the measurements, about their patients (they appear in
    // each patient's access history), and the Provenance resources, which
    // name no patient and would hide the first event from them
    // (AUDIT_HIDDEN_ENTITY).
    policy::AccessRecord measurements, provenances;
    measurements.patients = report->patients;
    for (const std::string& r : report->removed)
      (r.starts_with("Provenance/") ? provenances : measurements).resources.push_back(r);
    for (policy::AccessRecord* access : {&measurements, &provenances}) {
      if (access->resources.empty()) continue;
      access->rules.emplace_back("DEVICE_DATA_RETENTION");
      if (fhir::Status s = audit->record(server, request, status ? 200 : 500, *access); !s && status) return s;
    }
  }
  return status;
}

DevicePurgeTimer::DevicePurgeTimer(const fhir::Definitions& defs, storage::Storage& store, policy::AuditTrail* audit,
                                   int64_t interval_seconds)
    : defs_(defs), store_(store), audit_(audit), interval_seconds_(interval_seconds) {}

DevicePurgeTimer::~DevicePurgeTimer() { stop(); }

void DevicePurgeTimer::start() { thread_ = std::thread([this] { loop(); }); }

void DevicePurgeTimer::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DevicePurgeTimer::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    interactions::devices::PurgeReport report;
    fhir::Status s = run_device_purge(defs_, store_, audit_, now_us, &report);
    if (!s) std::fprintf(stderr, "espace: device data purge failed (retried next run): %s\n", s.message().c_str());
    if (!report.removed.empty())
      std::fprintf(stderr, "espace: device data purge removed %zu resources\n", report.removed.size());
    lock.lock();
    wake_.wait_for(lock, std::chrono::seconds(interval_seconds_), [this] { return stopping_; });
  }
}

}  // namespace espace::app
