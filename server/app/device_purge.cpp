#include "device_purge.h"

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
    policy::AccessRecord access;
    access.patients = report->patients;
    access.resources = report->removed;
    access.rules.emplace_back("DEVICE_DATA_RETENTION");
    if (fhir::Status s = audit->record(server, request, status ? 200 : 500, access); !s && status) return s;
  }
  return status;
}

}  // namespace espace::app
