// FHIR XML (hl7.org/fhir/R4/xml.html) <-> Node, with libxml2.
#pragma once

#include <string>
#include <string_view>

#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"  // ParseLimits
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"

namespace espace::fhir {

// Parses one resource in the FHIR namespace. DTDs, entity expansion and
// network access are disabled: a document carrying a DOCTYPE is refused.
Status parse_xml(const Definitions& defs, std::string_view text, Node* out,
                 const ParseLimits& limits = {});

// Checks that `div` is a well-formed XHTML <div> in the XHTML namespace (the
// value of Narrative.div as JSON carries it), with the same hardening as
// parse_xml (no DOCTYPE, depth and size limits). On success *normalised (if
// given) receives the text parse_xml would store for the same markup. Lets
// the JSON reader or the validator refuse narratives that are not XHTML;
// which elements and attributes are allowed is the validator's business.
Status check_xhtml_div(std::string_view div, std::string* normalised = nullptr, const ParseLimits& limits = {});

struct XmlWriteOptions {
  bool pretty = false;
};

// Writes the resource in definition element order, UTF-8, always with an XML
// declaration. A narrative div is re-read and re-serialized on the way, so a
// value that is not well-formed XHTML is written as escaped text inside a
// <div> and can never alter the surrounding document.
std::string write_xml(const Node& resource, const XmlWriteOptions& opts = {});

}  // namespace espace::fhir
