// Every JSON resource of the official R4 package must survive parse -> write
// unchanged (compared canonically: key order ignored, array order and exact
// number text kept). Examples that are themselves invalid are listed, with the
// rule they break, in test-data/fhir-model/known-invalid-examples.txt and must
// be rejected by the parser.
#include <catch2/catch.hpp>

#include <rapidjson/reader.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "espace/fhir/json.h"
#include "model_fixture.h"
#include "text_helpers.h"

using namespace espace::fhir;

namespace {

using espace::testing::read_text;

// A JSON value in a form that compares canonically.
struct Canon {
  enum Kind { Null, Bool, Number, String, Object, Array } kind = Null;
  std::string text;  // bool "true"/"false", number text, string content
  std::map<std::string, Canon> members;
  std::vector<Canon> items;
  bool duplicate_key = false;

  bool operator==(const Canon& o) const {
    return kind == o.kind && text == o.text && members == o.members && items == o.items;
  }
};

class CanonBuilder : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, CanonBuilder> {
 public:
  bool Null() { return add(Canon{}); }
  bool Bool(bool b) {
    Canon c;
    c.kind = Canon::Bool;
    c.text = b ? "true" : "false";
    return add(std::move(c));
  }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    Canon c;
    c.kind = Canon::Number;
    c.text.assign(s, n);
    return add(std::move(c));
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    Canon c;
    c.kind = Canon::String;
    c.text.assign(s, n);
    return add(std::move(c));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    keys_.back().assign(s, n);
    return true;
  }
  bool StartObject() { return open(Canon::Object); }
  bool StartArray() { return open(Canon::Array); }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool EndArray(rapidjson::SizeType) { return close(); }

  Canon result;

 private:
  bool open(Canon::Kind k) {
    Canon c;
    c.kind = k;
    stack_.push_back(std::move(c));
    keys_.emplace_back();
    return true;
  }
  bool close() {
    Canon c = std::move(stack_.back());
    stack_.pop_back();
    keys_.pop_back();
    return add(std::move(c));
  }
  bool add(Canon c) {
    if (stack_.empty()) {
      result = std::move(c);
      return true;
    }
    Canon& parent = stack_.back();
    if (parent.kind == Canon::Array) {
      parent.items.push_back(std::move(c));
    } else {
      if (!parent.members.emplace(keys_.back(), std::move(c)).second) parent.duplicate_key = true;
    }
    return true;
  }
  std::vector<Canon> stack_;
  std::vector<std::string> keys_;
};

bool canonical(const std::string& text, Canon* out) {
  CanonBuilder b;
  rapidjson::Reader reader;
  rapidjson::StringStream ss(text.c_str());
  if (reader.Parse<rapidjson::kParseNumbersAsStringsFlag>(ss, b).IsError()) return false;
  *out = std::move(b.result);
  return true;
}

// First path where two canonical values differ, for failure messages.
std::string first_difference(const Canon& a, const Canon& b, const std::string& path) {
  if (a.kind != b.kind) return path + ": kind differs";
  if (a.text != b.text) return path + ": '" + a.text + "' vs '" + b.text + "'";
  for (const auto& [k, v] : a.members) {
    auto it = b.members.find(k);
    if (it == b.members.end()) return path + "." + k + ": missing in output";
    std::string d = first_difference(v, it->second, path + "." + k);
    if (!d.empty()) return d;
  }
  for (const auto& [k, v] : b.members)
    if (!a.members.count(k)) return path + "." + k + ": extra in output";
  if (a.items.size() != b.items.size()) return path + ": array length differs";
  for (size_t i = 0; i < a.items.size(); ++i) {
    std::string d = first_difference(a.items[i], b.items[i], path + "[" + std::to_string(i) + "]");
    if (!d.empty()) return d;
  }
  return {};
}

// file name -> reason, from the data file.
std::map<std::string, std::string> known_invalid() {
  std::map<std::string, std::string> out;
  std::ifstream in(std::string(ESPACE_SOURCE_DIR) + "/test-data/fhir-model/known-invalid-examples.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(": ");
    if (colon == std::string::npos) continue;
    out.emplace(line.substr(0, colon), line.substr(colon + 2));
  }
  return out;
}

}  // namespace

TEST_CASE("every JSON resource of the R4 package round-trips", "[json][roundtrip]") {
  const Definitions& defs = test_definitions();
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(defs.package_dir())) {
    std::string name = e.path().filename().string();
    if (name.ends_with(".json") && name != "package.json" && name.find(".index.") == std::string::npos)
      files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() > 5000);

  const auto invalid = known_invalid();
  size_t passed = 0, rejected_as_known = 0;
  std::vector<std::string> failures;
  for (const std::string& name : files) {
    std::string text = read_text(defs.package_dir() + "/" + name);
    Node node;
    Status s = parse_json(defs, text, &node);
    auto known = invalid.find(name);
    if (known != invalid.end()) {
      if (s)
        failures.push_back(name + ": listed as invalid but parses");
      else
        ++rejected_as_known;
      continue;
    }
    if (!s) {
      const Issue& i = s.issues().front();
      failures.push_back(name + ": " + i.message_id + " " + i.diagnostics + " @" + std::to_string(i.line) + ":" +
                         std::to_string(i.column));
      continue;
    }
    std::string written = write_json(node);
    Canon original, output;
    REQUIRE(canonical(text, &original));
    if (!canonical(written, &output)) {
      failures.push_back(name + ": output is not JSON");
      continue;
    }
    if (!(original == output)) {
      failures.push_back(name + ": " + first_difference(original, output, std::string(resource_type(node))));
      continue;
    }
    ++passed;
  }
  for (const std::string& f : failures) UNSCOPED_INFO(f);
  INFO("round-tripped " << passed << " of " << files.size() << " files; " << rejected_as_known
                        << " known-invalid examples rejected");
  CHECK(failures.empty());
  CHECK(passed + rejected_as_known == files.size());
  WARN("round-tripped " << passed << " of " << files.size() << " files; " << rejected_as_known
                        << " known-invalid examples rejected");
}
