// Shared by the validator tests: R4 definitions, terminology and validator, loaded once.
#pragma once

#include <algorithm>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "model_fixture.h"
#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/profiles/validator.h"
#include "espace/terminology/terminology.h"

namespace profiles_test {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline const espace::fhir::Definitions& definitions() { return test_definitions(); }

inline const espace::terminology::Store& terminology() {
  static std::unique_ptr<espace::terminology::Store> store = [] {
    std::unique_ptr<espace::terminology::Store> s;
    espace::fhir::Status st = espace::terminology::Store::load(espace::fhir::Definitions::default_package_dir(), &s);
    if (!st) throw std::runtime_error("cannot load terminology: " + st.message());
    return s;
  }();
  return *store;
}

inline const espace::profiles::Validator& validator() {
  static espace::profiles::Validator v(definitions(), &terminology());
  return v;
}

// The validator with our profiles (profiles/data) and the server's required
// profiles, as `espace serve` sets it up without --relaxed-profiles.
inline const espace::profiles::Validator& french_validator() {
  static std::unique_ptr<espace::profiles::Validator> v = [] {
    auto made = std::make_unique<espace::profiles::Validator>(definitions(), &terminology());
    espace::fhir::Status st = made->load_data_profiles();
    if (st) st = made->load_required_profiles();
    if (!st) throw std::runtime_error("cannot load our profiles: " + st.message());
    return made;
  }();
  return *v;
}

inline espace::fhir::Node parse(const std::string& json) {
  espace::fhir::Node n;
  espace::fhir::Status st = espace::fhir::parse_json(definitions(), json, &n);
  if (!st) throw std::runtime_error("test resource does not parse: " + st.message());
  return n;
}

// "message-id @ expression" of the issues of these severities, sorted. dom-6
// (no narrative) is left out: advice the fixtures do not follow, to stay short.
inline std::vector<std::string> of_severity(const std::vector<espace::fhir::Issue>& issues,
                                            const std::set<espace::fhir::Severity>& severities) {
  std::vector<std::string> out;
  for (const espace::fhir::Issue& i : issues)
    if (severities.count(i.severity) && i.message_id != "inv-dom-6") out.push_back(i.message_id + " @ " + i.expression);
  std::sort(out.begin(), out.end());
  return out;
}

// The errors and fatal issues, as of_severity gives them.
inline std::vector<std::string> errors(const std::vector<espace::fhir::Issue>& issues) {
  return of_severity(issues, {espace::fhir::Severity::Error, espace::fhir::Severity::Fatal});
}

// Every issue with its diagnostics, one per line (for INFO on failure).
inline std::string dump(const std::vector<espace::fhir::Issue>& issues) {
  std::string s;
  for (const espace::fhir::Issue& i : issues) s += i.message_id + " @ " + i.expression + ": " + i.diagnostics + "\n";
  return s;
}

}  // namespace profiles_test
