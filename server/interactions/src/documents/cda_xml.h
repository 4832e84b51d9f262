// A CDA R2 document read into a small element tree, with libxml2 hardened
// the same way as the FHIR XML reader: no DTD, no entity substitution, no
// network, a DOCTYPE refused as soon as it is seen, size and depth bounded.
// Only what the header rules and the mapping need is kept: element names and
// namespaces, attributes, text.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "espace/fhir/status.h"

namespace espace::interactions::cda {

inline constexpr std::string_view kHl7Namespace = "urn:hl7-org:v3";

struct XmlElement {
  std::string name;        // local name
  bool in_hl7 = false;     // in urn:hl7-org:v3 (path steps only match these)
  int line = 0;
  // Attributes without namespace by local name; xsi:type as "xsi:type",
  // xml:lang as "xml:lang"; attributes in other namespaces are dropped.
  std::vector<std::pair<std::string, std::string>> attributes;
  std::string text;        // the element's own character data, concatenated
  std::vector<std::unique_ptr<XmlElement>> children;
  const XmlElement* parent = nullptr;

  const std::string* attribute(std::string_view key) const {
    for (const auto& [k, v] : attributes)
      if (k == key) return &v;
    return nullptr;
  }
};

struct XmlLimits {
  size_t max_bytes = 64u << 20;  // a CDA carrying an imaging PDF may be large
  int max_depth = 128;
  size_t max_elements = 500000;
};

// Parses `text` into *root. Errors (all Invalid, 400, except TooLarge, 413):
// cda-xml-doctype, cda-xml-too-deep, cda-xml-too-many-elements,
// cda-xml-too-large, cda-xml-malformed, cda-xml-not-cda (root element is
// not urn:hl7-org:v3 ClinicalDocument).
fhir::Status parse_cda_xml(std::string_view text, std::unique_ptr<XmlElement>* root,
                           const XmlLimits& limits = {});

}  // namespace espace::interactions::cda
