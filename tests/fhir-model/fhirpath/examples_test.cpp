// The engine against the official R4 examples: every SearchParameter
// expression of a resource type is evaluated on each example of that type,
// and every invariant of the type's StructureDefinition on each element it
// constrains. No evaluation may fail; the examples are published as valid,
// so the invariants must hold (the few examples known to break one are
// listed with the invariant, and the test checks they still do).
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "test_support.h"

using namespace espace;
using namespace espace::fhirpath;
using fhir::Status;

namespace {

struct Compiled {
  std::string id;
  std::shared_ptr<const Expression> expr;
};

struct Invariant {
  std::string key;
  std::shared_ptr<const Expression> path;  // selects the constrained elements
  std::shared_ptr<const Expression> expr;
  std::string text;
};

bool skip_file(const std::string& name) {
  static const char* kSkip[] = {"SearchParameter-", "ValueSet-", "CodeSystem-", "StructureDefinition-",
                                "ConceptMap-", "OperationDefinition-", "package.json", ".index.json",
                                "CapabilityStatement-", "ImplementationGuide-", "NamingSystem-", "CompartmentDefinition-"};
  for (const char* s : kSkip)
    if (name.rfind(s, 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("search parameters and invariants evaluate on the official examples", "[fhirpath][examples]") {
  const fhir::Definitions& defs = fhirpath_test::definitions();
  CompileOptions opts;
  opts.definitions = &defs;

  std::map<std::string, std::vector<Compiled>> params;  // by base resource type
  for (const std::string& json : defs.search_parameters_json()) {
    rapidjson::Document doc;
    doc.Parse(json.c_str(), json.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("expression") || !doc.HasMember("base")) continue;
    Compiled c;
    c.id = doc.HasMember("id") ? doc["id"].GetString() : "?";
    REQUIRE(compile(doc["expression"].GetString(), opts, &c.expr));
    for (const auto& b : doc["base"].GetArray()) params[b.GetString()].push_back(c);
  }

  std::string dir = fhir::Definitions::default_package_dir();
  std::map<std::string, std::vector<Invariant>> invariants;  // by resource type
  auto invariants_of = [&](const std::string& type) -> const std::vector<Invariant>& {
    auto it = invariants.find(type);
    if (it != invariants.end()) return it->second;
    std::vector<Invariant>& list = invariants[type];
    std::string path = dir + "/StructureDefinition-" + type + ".json";
    if (!std::filesystem::exists(path)) return list;
    rapidjson::Document doc;
    std::string text = fhirpath_test::read_text(path);
    doc.Parse(text.c_str(), text.size());
    for (const auto& e : doc["snapshot"]["element"].GetArray()) {
      if (!e.HasMember("constraint")) continue;
      std::string epath = e["path"].GetString();
      if (epath.size() > 3 && epath.compare(epath.size() - 3, 3, "[x]") == 0) epath.resize(epath.size() - 3);
      for (const auto& k : e["constraint"].GetArray()) {
        // Warnings (dom-6 narrative, pdf-0 computable names) are advice, not validity.
        if (!k.HasMember("expression") || std::string(k["severity"].GetString()) != "error") continue;
        Invariant inv;
        inv.key = k["key"].GetString();
        inv.text = k["expression"].GetString();
        REQUIRE(compile(epath, opts, &inv.path));
        REQUIRE(compile(inv.text, opts, &inv.expr));
        list.push_back(std::move(inv));
      }
    }
    return list;
  };

  // Official examples that break an invariant of their own type (example: invariant key).
  const std::set<std::string> known_violations = {
      "Bundle-dataelements.json: bdl-7",  // its entries repeat fullUrls (de-Quantity.value, ...)
  };

  size_t resources = 0, unparsed = 0, sp_evals = 0, inv_evals = 0;
  std::vector<std::string> errors, violations;
  std::set<std::string> seen_violations;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".json" || skip_file(name)) continue;
    fhir::Node root;
    if (!fhir::parse_json(defs, fhirpath_test::read_text(entry.path().string()), &root)) {
      ++unparsed;
      continue;
    }
    ++resources;
    const std::string type = root.type->name;
    Environment env;
    for (const std::string& base : {type, std::string("Resource"), std::string("DomainResource")}) {
      auto it = params.find(base);
      if (it == params.end()) continue;
      for (const Compiled& c : it->second) {
        Collection out;
        Status st = c.expr->evaluate(&root, env, &out);
        ++sp_evals;
        if (!st) errors.push_back(name + " SearchParameter " + c.id + ": " + st.message());
      }
    }
    for (const Invariant& inv : invariants_of(type)) {
      Collection focus;
      Status st = inv.path->evaluate(&root, env, &focus);
      if (!st) {
        errors.push_back(name + " path of " + inv.key + ": " + st.message());
        continue;
      }
      for (const Value& v : focus) {
        Collection input{v}, out;
        Environment ienv;
        ienv.resource = &root;
        st = inv.expr->evaluate(input, ienv, &out);
        ++inv_evals;
        if (!st) {
          errors.push_back(name + " " + inv.key + ": " + st.message());
        } else if (out.size() == 1 && out[0].kind() == ValueKind::Boolean && !out[0].as_bool()) {
          std::string id = name + ": " + inv.key;
          if (seen_violations.insert(id).second && !known_violations.count(id))
            violations.push_back(id + " (" + inv.text + ")");
        }
      }
    }
  }
  std::cout << "FHIRPath on examples: " << resources << " resources (" << unparsed << " not parsed), " << sp_evals
            << " search parameter and " << inv_evals << " invariant evaluations, " << errors.size() << " errors, "
            << violations.size() << " invariant violations\n";
  for (size_t i = 0; i < errors.size() && i < 40; ++i) std::cout << "  error: " << errors[i] << "\n";
  for (size_t i = 0; i < violations.size() && i < 40; ++i) std::cout << "  violation: " << violations[i] << "\n";
  CHECK(resources > 500);
  CHECK(errors.empty());
  CHECK(violations.empty());
  for (const std::string& k : known_violations) CHECK(seen_violations.count(k) == 1);
}
