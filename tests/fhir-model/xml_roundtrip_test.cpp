// Every example of the R4 package: JSON -> Node -> XML -> Node -> JSON must
// equal the original JSON canonically; and the official XML examples of the
// FHIRPath suite must read to their JSON conversions.
#include <catch2/catch.hpp>

#include <filesystem>
#include <iostream>

#include "espace/fhir/json.h"
#include "espace/fhir/xml.h"
#include "xml_test_util.h"

namespace fs = std::filesystem;
using namespace espace::fhir;

namespace {

std::vector<fs::path> package_resource_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(Definitions::default_package_dir())) {
    const fs::path& p = entry.path();
    if (p.extension() != ".json") continue;
    const std::string name = p.filename().string();
    if (name == "package.json" || name[0] == '.') continue;  // npm metadata, not resources
    files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("xml: every package example survives JSON -> XML -> JSON", "[xml][roundtrip]") {
  const Definitions& defs = xml_test::definitions();
  const std::vector<fs::path> files = package_resource_files();
  REQUIRE(files.size() > 5000);

  size_t json_refused = 0, xml_equal = 0, xml_different = 0, xml_refused = 0, pretty_different = 0;
  std::vector<std::string> failures;
  for (const fs::path& file : files) {
    const std::string original = xml_test::read_file(file.string());
    Node from_json;
    if (!parse_json(defs, original, &from_json)) {
      ++json_refused;  // the JSON parser's business; reported below
      continue;
    }
    const std::string xml = write_xml(from_json);
    Node from_xml;
    Status st = parse_xml(defs, xml, &from_xml);
    if (!st) {
      ++xml_refused;
      failures.push_back(file.filename().string() + ": written XML refused: " + st.message() + " at " +
                         (st.issues().empty() ? "" : st.issues()[0].expression));
      continue;
    }
    const std::string difference = xml_test::compare_json_texts(original, write_json(from_xml));
    if (difference.empty()) {
      ++xml_equal;
    } else {
      ++xml_different;
      failures.push_back(file.filename().string() + ": " + difference);
    }
    // Pretty printing changes layout only.
    Node from_pretty;
    if (!parse_xml(defs, write_xml(from_json, {.pretty = true}), &from_pretty) ||
        write_json(from_pretty) != write_json(from_xml))
      ++pretty_different;
  }
  std::cout << "[xml roundtrip] files " << files.size() << ", JSON parser refused " << json_refused
            << ", equal after XML round trip " << xml_equal << ", different " << xml_different
            << ", written XML refused " << xml_refused << ", pretty form different " << pretty_different << "\n";
  for (size_t i = 0; i < failures.size() && i < 20; ++i) UNSCOPED_INFO(failures[i]);
  CHECK(xml_refused == 0);
  CHECK(xml_different == 0);
  CHECK(pretty_different == 0);
  CHECK(xml_equal + json_refused == files.size());
  // Nearly everything must actually have gone through XML for this test to mean anything.
  CHECK(xml_equal > files.size() * 9 / 10);
}

TEST_CASE("xml: official XML examples read to their JSON conversions", "[xml][conformance]") {
  const Definitions& defs = xml_test::definitions();
  const fs::path dir = fs::path(ESPACE_SHARED_DIR) / "conformance" / "fhirpath";
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".xml" && entry.path().filename() != "tests-fhir-r4.xml")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 6);

  size_t equal = 0;
  for (const fs::path& file : files) {
    INFO(file.filename().string());
    const fs::path json_file = dir / "json" / (file.stem().string() + ".json");
    REQUIRE(fs::exists(json_file));
    Node node;
    Status st = parse_xml(defs, xml_test::read_file(file.string()), &node);
    INFO((st.issues().empty() ? std::string() : st.issues()[0].expression + ": " + st.message()));
    CHECK(st.is_ok());
    if (!st) continue;
    // The converter that produced the JSON dropped whitespace-only text in
    // the narrative (indentation) and kept line breaks typed literally inside
    // attribute values, which an XML parser must turn into spaces (XML 1.0
    // section 3.3.3); both are ignored here. The round trip test above shows
    // that line breaks written by us (as &#10;) survive.
    xml_test::CompareOptions opts;
    opts.drop_blank_xhtml_text = true;
    opts.attribute_whitespace = true;
    const std::string difference =
        xml_test::compare_json_texts(xml_test::read_file(json_file.string()), write_json(node), opts);
    CHECK(difference == "");
    if (difference.empty()) ++equal;
  }
  std::cout << "[xml conformance] " << equal << " of " << files.size() << " official XML examples match\n";
}
