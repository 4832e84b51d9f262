// Every invariant (constraint.expression) of every StructureDefinition in the
// R4 package and every SearchParameter expression must compile.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <iostream>
#include <set>

#include "test_support.h"

using namespace espace;
using namespace espace::fhirpath;

namespace {

void collect_constraints(const rapidjson::Value& elements, std::vector<std::pair<std::string, std::string>>* out,
                         const std::string& sd) {
  if (!elements.IsArray()) return;
  for (const auto& e : elements.GetArray()) {
    auto c = e.FindMember("constraint");
    if (c == e.MemberEnd() || !c->value.IsArray()) continue;
    for (const auto& k : c->value.GetArray()) {
      auto x = k.FindMember("expression");
      auto key = k.FindMember("key");
      if (x == k.MemberEnd() || !x->value.IsString()) continue;
      std::string where = sd + " " + (key != k.MemberEnd() && key->value.IsString() ? key->value.GetString() : "");
      out->emplace_back(where, x->value.GetString());
    }
  }
}

}  // namespace

TEST_CASE("every R4 invariant and search parameter expression compiles", "[fhirpath][package]") {
  const fhir::Definitions& defs = fhirpath_test::definitions();
  std::vector<std::pair<std::string, std::string>> invariants;
  size_t definitions_read = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fhir::Definitions::default_package_dir())) {
    std::string name = entry.path().filename().string();
    if (name.rfind("StructureDefinition-", 0) != 0 || entry.path().extension() != ".json") continue;
    rapidjson::Document doc;
    std::string text = fhirpath_test::read_text(entry.path().string());
    doc.Parse(text.c_str(), text.size());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    ++definitions_read;
    for (const char* part : {"snapshot", "differential"}) {
      auto p = doc.FindMember(part);
      if (p == doc.MemberEnd() || !p->value.IsObject()) continue;
      auto els = p->value.FindMember("element");
      if (els != p->value.MemberEnd()) collect_constraints(els->value, &invariants, name);
    }
  }
  REQUIRE(definitions_read > 500);

  CompileOptions opts;
  opts.definitions = &defs;
  std::set<std::string> distinct;
  std::vector<std::string> failures;
  for (const auto& [where, expr] : invariants) {
    distinct.insert(expr);
    std::shared_ptr<const Expression> e;
    fhir::Status st = compile(expr, opts, &e);
    if (!st) failures.push_back(where + ": " + expr + " -> " + st.message());
  }

  size_t search_params = 0;
  for (const std::string& json : defs.search_parameters_json()) {
    rapidjson::Document doc;
    doc.Parse(json.c_str(), json.size());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    auto x = doc.FindMember("expression");
    if (x == doc.MemberEnd() || !x->value.IsString()) continue;
    ++search_params;
    std::shared_ptr<const Expression> e;
    fhir::Status st = compile(x->value.GetString(), opts, &e);
    auto id = doc.FindMember("id");
    if (!st)
      failures.push_back(std::string("SearchParameter ") + (id != doc.MemberEnd() ? id->value.GetString() : "?") + ": " +
                         x->value.GetString() + " -> " + st.message());
  }
  // Strict mode must accept what R4 itself publishes: search parameters with a
  // single base, checked against that base type.
  size_t strict_checked = 0;
  CompileOptions strict = opts;
  strict.strict = true;
  for (const std::string& json : defs.search_parameters_json()) {
    rapidjson::Document doc;
    doc.Parse(json.c_str(), json.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("expression") || !doc.HasMember("base")) continue;
    if (doc["base"].Size() != 1) continue;
    strict.root_type = doc["base"][0].GetString();
    if (!defs.type(strict.root_type)) continue;
    ++strict_checked;
    std::shared_ptr<const Expression> e;
    fhir::Status st = compile(doc["expression"].GetString(), strict, &e);
    // The package's example-extension has base Patient but an expression on DocumentReference:
    // strict mode is right to refuse it.
    if (std::string(doc["id"].GetString()) == "example-extension") {
      CHECK_FALSE(st);
      continue;
    }
    if (!st)
      failures.push_back(std::string("strict SearchParameter ") + doc["id"].GetString() + ": " +
                         doc["expression"].GetString() + " -> " + st.message());
  }
  // ... and invariants of the base types, checked against the type of the element they sit on.
  size_t strict_invariants = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fhir::Definitions::default_package_dir())) {
    std::string name = entry.path().filename().string();
    if (name.rfind("StructureDefinition-", 0) != 0 || entry.path().extension() != ".json") continue;
    rapidjson::Document doc;
    std::string text = fhirpath_test::read_text(entry.path().string());
    doc.Parse(text.c_str(), text.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("derivation") ||
        std::string(doc["derivation"].GetString()) != "specialization" || !doc.HasMember("snapshot"))
      continue;
    for (const auto& e : doc["snapshot"]["element"].GetArray()) {
      if (!e.HasMember("constraint")) continue;
      // The element's own type: the type itself at the root, else walk the path.
      std::string path = e["path"].GetString();
      const fhir::TypeDef* t = nullptr;
      size_t dot = path.find('.');
      t = defs.type(path.substr(0, dot));
      while (t && dot != std::string::npos) {
        size_t next = path.find('.', dot + 1);
        const fhir::ElementDef* el = t->find(path.substr(dot + 1, next == std::string::npos ? next : next - dot - 1));
        t = el && el->types.size() == 1 ? el->types[0] : nullptr;
        dot = next;
      }
      if (!t) continue;
      strict.root_type = t->name;
      for (const auto& k : e["constraint"].GetArray()) {
        if (!k.HasMember("expression")) continue;
        ++strict_invariants;
        std::shared_ptr<const Expression> x;
        fhir::Status st = compile(k["expression"].GetString(), strict, &x);
        // R4's cid-0 tests ChargeItemDefinition.name, an element R4 ChargeItemDefinition does not have.
        if (std::string(k["key"].GetString()) == "cid-0" && path == "ChargeItemDefinition") {
          CHECK_FALSE(st);
          continue;
        }
        if (!st)
          failures.push_back("strict " + name + " " + path + " " + k["key"].GetString() + ": " +
                             k["expression"].GetString() + " -> " + st.message());
      }
    }
  }
  std::cout << "FHIRPath strict mode: " << strict_checked << " single-base SearchParameter expressions and "
            << strict_invariants << " base-type invariants checked\n";

  std::cout << "FHIRPath package expressions: " << invariants.size() << " invariant expressions (" << distinct.size()
            << " distinct) in " << definitions_read << " StructureDefinitions, " << search_params
            << " SearchParameter expressions; " << failures.size() << " failed to compile\n";
  for (const auto& f : failures) std::cout << "  " << f << "\n";
  CHECK(invariants.size() > 1000);
  CHECK(search_params > 1000);
  CHECK(failures.empty());
}
