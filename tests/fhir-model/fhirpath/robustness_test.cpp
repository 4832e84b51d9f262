// Mangled expressions (derived deterministically from the conformance suite)
// must compile or fail with a positioned message, and evaluate or fail with a
// message: never crash, hang or fail silently. Most useful under
// ESPACE_SANITIZE=ON.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>

#include "test_support.h"

using namespace espace;
using namespace espace::fhirpath;

TEST_CASE("mangled expressions fail cleanly", "[fhirpath][robustness]") {
  const fhir::Definitions& defs = fhirpath_test::definitions();
  std::string text = fhirpath_test::read_text(std::string(ESPACE_SHARED_DIR) + "/conformance/fhirpath/cases.json");
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  REQUIRE(doc.IsObject());
  std::vector<std::string> seeds;
  for (const auto& c : doc["cases"].GetArray()) seeds.emplace_back(c["expression"].GetString());
  REQUIRE(seeds.size() > 900);

  fhir::Node patient = fhirpath_test::parse_resource(
      fhirpath_test::read_text(std::string(ESPACE_SHARED_DIR) + "/conformance/fhirpath/json/patient-example.json"));

  uint64_t state = 0x2545F4914F6CDD1Dull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  static const char kAlphabet[] = "().,[]{}'`@%$+-*/&|=~<>!\\ 0123456789aTZ:name";
  CompileOptions opts;
  opts.definitions = &defs;
  size_t compiled = 0, evaluated_ok = 0, failures_with_message = 0, silent_failures = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string e = seeds[next() % seeds.size()];
    int edits = 1 + int(next() % 4);
    for (int k = 0; k < edits && !e.empty(); ++k) {
      size_t pos = next() % e.size();
      char c = kAlphabet[next() % (sizeof kAlphabet - 1)];
      switch (next() % 3) {
        case 0: e.erase(pos, 1); break;
        case 1: e.insert(e.begin() + long(pos), c); break;
        default: e[pos] = c;
      }
    }
    // Splice two expressions now and then.
    if (next() % 5 == 0) e += "." + seeds[next() % seeds.size()];
    std::shared_ptr<const Expression> x;
    fhir::Status st = compile(e, opts, &x);
    if (!st) {
      if (st.message().empty() || st.issues()[0].column < 1) ++silent_failures;
      else ++failures_with_message;
      continue;
    }
    ++compiled;
    Collection out;
    st = x->evaluate(&patient, Environment{}, &out);
    if (st) ++evaluated_ok;
    else if (st.message().empty()) ++silent_failures;
    else ++failures_with_message;
  }
  INFO("compiled " << compiled << ", evaluated " << evaluated_ok << ", clean failures " << failures_with_message);
  CHECK(silent_failures == 0);
  CHECK(compiled > 1000);           // the mangling leaves many valid expressions
  CHECK(failures_with_message > 1000);
}
