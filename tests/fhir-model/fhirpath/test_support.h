// Shared by the FHIRPath tests: file reading and the R4 definitions, loaded once.
#pragma once

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "model_fixture.h"
#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/fhirpath/fhirpath.h"

namespace fhirpath_test {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline const espace::fhir::Definitions& definitions() { return test_definitions(); }

// Evaluates `expr` over `root` (may be null) and returns the results' display forms joined by " | ",
// or "ERROR: ..." when compilation or evaluation fails.
inline std::string eval_display(const std::string& expr, const espace::fhir::Node* root = nullptr,
                                const espace::fhirpath::Environment& env = {}) {
  using namespace espace::fhirpath;
  CompileOptions opts;
  opts.definitions = &definitions();
  std::shared_ptr<const Expression> e;
  espace::fhir::Status st = compile(expr, opts, &e);
  if (!st) return "ERROR: " + st.message();
  Collection out;
  st = e->evaluate(root, env, &out);
  if (!st) return "ERROR: " + st.message();
  std::string r;
  for (size_t i = 0; i < out.size(); ++i) r += (i ? " | " : "") + display(out[i]);
  return r;
}

inline espace::fhir::Node parse_resource(const std::string& json) {
  espace::fhir::Node n;
  espace::fhir::Status st = espace::fhir::parse_json(definitions(), json, &n);
  if (!st) throw std::runtime_error("test resource does not parse: " + st.message());
  return n;
}

}  // namespace fhirpath_test
