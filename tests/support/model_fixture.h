// Shared test helpers: the Definitions are loaded once per test program.
#pragma once

#include <cstdlib>
#include <cstdio>
#include <memory>

#include "espace/fhir/definitions.h"

inline const espace::fhir::Definitions& test_definitions() {
  static std::unique_ptr<espace::fhir::Definitions> defs = [] {
    std::unique_ptr<espace::fhir::Definitions> d;
    espace::fhir::Status s =
        espace::fhir::Definitions::load(espace::fhir::Definitions::default_package_dir(), &d);
    if (!s) {
      std::fprintf(stderr, "cannot load FHIR definitions: %s\n", s.message().c_str());
      std::abort();
    }
    return d;
  }();
  return *defs;
}
