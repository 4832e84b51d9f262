// The small XPath subset the CDA rules and mapping tables are written in:
//   /ClinicalDocument/recordTarget/patientRole/id[@root='1.2.250.1.213.1.4.8']/@extension
// Steps are element names in urn:hl7-org:v3 or '*'; a step may carry one
// predicate, a 1-based position [2] or an attribute test [@root='...'];
// the last step may be @attribute or name(). A path without the leading
// '/' is relative to a context element (the mapping's for_each).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cda_xml.h"
#include "espace/fhir/status.h"

namespace espace::interactions::cda {

struct PathStep {
  enum class Kind { Element, Attribute, Name } kind = Kind::Element;
  std::string name;  // element or attribute name; "*" for any element
  int position = 0;  // [n], 0 when absent
  std::string predicate_attribute, predicate_value;  // [@a='v']
};

struct Path {
  std::string text;
  bool absolute = false;
  std::vector<PathStep> steps;
};

// Invalid (naming the path) when the text is not in the subset.
fhir::Status parse_path(std::string_view text, Path* out);

struct PathMatch {
  const XmlElement* element = nullptr;  // the element reached (owner of the attribute)
  std::string value;   // attribute value, element name for name(), trimmed text for elements
  std::string xpath;   // concrete location, e.g. /ClinicalDocument/author[2]/assignedAuthor/id[1]/@extension
};

struct PathResult {
  std::vector<PathMatch> matches;
  // When nothing matched: where the path stopped, e.g.
  // "/ClinicalDocument/author" when the document has no author.
  std::string missing_xpath;
};

// `context` is the root for absolute paths; `context_xpath` its location.
PathResult evaluate_path(const Path& path, const XmlElement& context, const std::string& context_xpath);

// The concrete location of an element, as evaluate_path renders it.
std::string element_xpath(const XmlElement& element);

// Text with runs of XML whitespace collapsed to one space, ends trimmed.
std::string collapse_whitespace(std::string_view text);

}  // namespace espace::interactions::cda
