// The official FHIRPath R4 test suite (FHIR/fhir-test-cases, tests-fhir-r4.xml,
// normalized to cases.json). Every case runs with the engine in strict mode
// against the R4 definitions; the score is printed, and any failure that is
// not listed in test-data/fhirpath/known-failures.txt fails the test.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "espace/fhir/json.h"
#include "espace/fhirpath/fhirpath.h"
#include "test_support.h"

using namespace espace;
using namespace espace::fhirpath;

namespace {

struct Expected {
  std::string type, value;
};

struct Case {
  std::string name, group, expression, inputfile, invalid, mode;
  bool predicate = false, ordered = true;
  std::vector<Expected> outputs;
};

std::vector<Case> load_cases() {
  std::string text = fhirpath_test::read_text(std::string(ESPACE_SHARED_DIR) + "/conformance/fhirpath/cases.json");
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  std::vector<Case> cases;
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("cases")) return cases;
  auto str = [](const rapidjson::Value& o, const char* k) {
    auto it = o.FindMember(k);
    return it != o.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString()) : std::string();
  };
  for (const auto& c : doc["cases"].GetArray()) {
    Case k;
    k.name = str(c, "name");
    k.group = str(c, "group");
    k.expression = str(c, "expression");
    k.inputfile = str(c, "inputfile");
    k.invalid = str(c, "invalid");
    k.mode = str(c, "mode");
    k.predicate = c.HasMember("predicate") && c["predicate"].IsBool() && c["predicate"].GetBool();
    k.ordered = !c.HasMember("ordered") || !c["ordered"].IsBool() || c["ordered"].GetBool();
    for (const auto& o : c["outputs"].GetArray()) k.outputs.push_back({str(o, "type"), str(o, "value")});
    cases.push_back(std::move(k));
  }
  return cases;
}

std::string render(const Value& v) { return output_type(v) + "=" + display(v); }

// Returns "" when the case passes, else why not.
std::string run_case(const Case& c, const fhir::Definitions& defs, std::map<std::string, fhir::Node>& inputs) {
  const fhir::Node* root = nullptr;
  std::string root_type;
  if (!c.inputfile.empty()) {
    auto it = inputs.find(c.inputfile);
    if (it == inputs.end()) {
      fhir::Node n;
      std::string text =
          fhirpath_test::read_text(std::string(ESPACE_SHARED_DIR) + "/conformance/fhirpath/json/" + c.inputfile);
      fhir::Status st = fhir::parse_json(defs, text, &n);
      if (!st) return "input " + c.inputfile + " does not parse: " + st.message();
      it = inputs.emplace(c.inputfile, std::move(n)).first;
    }
    root = &it->second;
    root_type = root->type ? root->type->name : "";
  }
  CompileOptions opts;
  opts.definitions = &defs;
  opts.strict = true;
  opts.root_type = root_type;
  std::shared_ptr<const Expression> expr;
  fhir::Status st = compile(c.expression, opts, &expr);
  if (!st) return c.invalid.empty() ? "compile error: " + st.message() : "";
  Environment env;
  Collection out;
  st = expr->evaluate(root, env, &out);
  if (!st) return c.invalid.empty() ? "evaluation error: " + st.message() : "";
  if (!c.invalid.empty()) return "expected a " + c.invalid + " error, got " + std::to_string(out.size()) + " item(s)";
  if (c.predicate) {
    bool b = !out.empty();
    out.clear();
    out.push_back(Value::of_bool(b));
  }
  std::vector<std::string> got, want;
  for (const Value& v : out) got.push_back(render(v));
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    const Expected& e = c.outputs[i];
    // Untyped expectations compare the value only.
    if (e.type.empty() && i < out.size()) got[i] = "=" + display(out[i]);
    want.push_back(e.type + "=" + e.value);
  }
  if (!c.ordered) {
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
  }
  if (got == want) return "";
  std::string msg = "got [";
  for (size_t i = 0; i < got.size(); ++i) msg += (i ? ", " : "") + got[i];
  msg += "] want [";
  for (size_t i = 0; i < want.size(); ++i) msg += (i ? ", " : "") + want[i];
  return msg + "]";
}

std::map<std::string, std::string> known_failures() {
  std::map<std::string, std::string> known;
  std::istringstream in(fhirpath_test::read_text(std::string(ESPACE_SOURCE_DIR) + "/test-data/fhirpath/known-failures.txt"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    known[line.substr(0, colon)] = line.substr(colon + 1);
  }
  return known;
}

}  // namespace

TEST_CASE("FHIRPath R4 conformance suite", "[fhirpath][conformance]") {
  const fhir::Definitions& defs = fhirpath_test::definitions();
  std::vector<Case> cases = load_cases();
  REQUIRE(cases.size() == 935);
  auto known = known_failures();
  std::map<std::string, fhir::Node> inputs;
  size_t passed = 0;
  std::vector<std::string> unexpected, now_passing;
  std::set<std::string> seen_failures;
  for (const Case& c : cases) {
    std::string why = run_case(c, defs, inputs);
    if (why.empty()) {
      ++passed;
      if (known.count(c.name) && !seen_failures.count(c.name)) now_passing.push_back(c.name);
    } else {
      seen_failures.insert(c.name);
      if (!known.count(c.name)) unexpected.push_back(c.name + " [" + c.expression + "]: " + why);
    }
  }
  std::cout << "FHIRPath conformance: " << passed << "/" << cases.size() << " passed\n";
  for (const std::string& s : unexpected) std::cout << "  FAIL " << s << "\n";
  for (const std::string& s : now_passing) std::cout << "  now passing (remove from known-failures.txt): " << s << "\n";
  CHECK(unexpected.empty());
  CHECK(now_passing.empty());
}
