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

struct XmlWriteOptions {
  bool pretty = false;
};

std::string write_xml(const Node& resource, const XmlWriteOptions& opts = {});

}  // namespace espace::fhir
