// Who may do what. Every FHIR request passes through Policy::authorize before
// its interaction runs (deny by default: a server has no policy until one is
// configured, and `serve` refuses to start without one).
//
// This is the seam the access-control rules (tokens, consents, masking,
// break-the-glass, audit) plug into; today only the explicit open policy
// exists, for development and generic FHIR test suites.
#pragma once

#include <memory>
#include <string>

#include "espace/fhir/status.h"
#include "espace/interactions/api.h"
#include "espace/policy/caller.h"

namespace espace::policy {

class Policy {
 public:
  virtual ~Policy() = default;
  // Ok to proceed, or Unauthorized/Forbidden with the reason.
  virtual fhir::Status authorize(const Caller& caller, const interactions::FhirRequest& request) const = 0;
  virtual const char* name() const = 0;
};

// Allows everything: chosen explicitly with `--auth none`.
std::unique_ptr<Policy> make_open_policy();

}  // namespace espace::policy
