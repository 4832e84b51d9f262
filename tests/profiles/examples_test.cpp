// Acceptance: every official R4 example validates against the base
// specification without errors, except the spec errata listed (with the
// rule and the reason) in test-data/profiles/known-example-errata.txt, each
// of which must still be reported.
#include <catch2/catch.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "profiles_support.h"

using namespace espace;

namespace {

// Lines "File.json: message-id @ location  # why"; '#' starts a comment.
std::set<std::string> load_errata() {
  std::set<std::string> out;
  std::istringstream in(profiles_test::read_text(std::string(ESPACE_SOURCE_DIR) +
                                                 "/test-data/profiles/known-example-errata.txt"));
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.pop_back();
    if (!line.empty()) out.insert(line);
  }
  return out;
}

bool is_example(const std::string& name) {
  static const char* kNotExamples[] = {"package.json", ".index.json"};
  for (const char* s : kNotExamples)
    if (name == s) return false;
  return name.ends_with(".json");
}

}  // namespace

TEST_CASE("every official R4 example validates against the base spec", "[profiles][examples]") {
  const auto& v = profiles_test::validator();
  std::set<std::string> errata = load_errata();
  std::set<std::string> seen_errata;
  std::vector<std::string> unexpected;
  std::map<std::string, size_t> by_id, info_by_id;
  size_t files = 0, validated = 0, unparsed = 0, warnings = 0;
  std::string dir = fhir::Definitions::default_package_dir();
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (is_example(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    ++files;
    fhir::Node root;
    if (!fhir::parse_json(profiles_test::definitions(), profiles_test::read_text(dir + "/" + name), &root)) {
      ++unparsed;
      continue;
    }
    ++validated;
    for (const fhir::Issue& i : v.validate(root)) {
      if (i.severity == fhir::Severity::Warning) ++warnings;
      if (i.severity == fhir::Severity::Information) ++info_by_id[i.message_id];
      if (i.severity != fhir::Severity::Error && i.severity != fhir::Severity::Fatal) continue;
      std::string key = name + ": " + i.message_id + " @ " + i.expression;
      ++by_id[i.message_id];
      if (errata.count(key))
        seen_errata.insert(key);
      else
        unexpected.push_back(key + "  -- " + i.diagnostics);
    }
  }
  std::cout << "validator on examples: " << validated << " of " << files << " files validated (" << unparsed
            << " not parsed), " << unexpected.size() << " unexpected errors, " << seen_errata.size()
            << " known errata, " << warnings << " warnings\n";
  for (const auto& [id, n] : by_id) std::cout << "  errors " << id << ": " << n << "\n";
  for (const auto& [id, n] : info_by_id) std::cout << "  information " << id << ": " << n << "\n";
  for (size_t i = 0; i < unexpected.size() && i < 60; ++i) std::cout << "  unexpected: " << unexpected[i] << "\n";
  for (const std::string& e : errata)
    if (!seen_errata.count(e)) std::cout << "  erratum no longer reported: " << e << "\n";
  CHECK(validated > 2000);
  CHECK(unexpected.empty());
  CHECK(seen_errata.size() == errata.size());
  auto stats = v.stats();
  std::cout << "invariants: " << stats.invariants << " (" << stats.invariants_native << " native), "
            << stats.not_compiled.size() << " not compiled\n";
  for (const std::string& s : stats.not_compiled) std::cout << "  not compiled: " << s << "\n";
  CHECK(stats.not_compiled.empty());
}
